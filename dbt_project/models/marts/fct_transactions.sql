{{
    config(
        incremental_strategy='replace_range',
        incremental_predicates=['partition_date between __start_date__ and __end_date__'],
    )
}}

with

transactions as (

    select * from {{ ref('int_transactions_deduplicated') }}
    where {{ run_partitions() }}

),

final as (

    select
        transaction_id,
        customer_id,
        category,
        amount,
        is_discounted,
        transaction_date,
        transaction_at,
        partition_date,
        {{ dbt.datediff('transaction_date', 'partition_date', 'day') }}
            as arrival_lag_days,
        partition_date > transaction_date as is_late_arrival,
        source_file

    from transactions

)

select * from final
