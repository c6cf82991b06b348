{{
    config(
        incremental_strategy='replace_range',
        incremental_predicates=['partition_date between __start_date__ and __end_date__'],
    )
}}

{#-
    First arrival wins: a purchase (transaction_id, transaction_at) delivered again
    in a later partition is dropped. An earlier copy has the same transaction_at,
    so it arrived on or after that day (the gate rejects event times after the
    arrival day): the lookup reads only partitions from the earliest incoming
    purchase day on, never the whole history.
-#}

with

transactions as (

    select * from {{ ref('stg_landing__transactions') }}
    where {{ run_partitions() }}

),

{% if is_incremental() %}

earlier_arrivals as (

    select
        transaction_id,
        transaction_at

    from {{ this }}
    where partition_date < {{ date_literal(run_start_date()) }}
        and partition_date >= (select min(transaction_date) from transactions)

),

{% endif %}

ranked_arrivals as (

    select
        *,
        row_number() over (
            partition by transaction_id, transaction_at
            order by partition_date, source_file
        ) as arrival_number

    from transactions

),

first_arrivals as (

    select ranked_arrivals.*
    from ranked_arrivals
    {%- if is_incremental() %}
    left join earlier_arrivals
        on ranked_arrivals.transaction_id = earlier_arrivals.transaction_id
        and ranked_arrivals.transaction_at = earlier_arrivals.transaction_at
    {%- endif %}
    where ranked_arrivals.arrival_number = 1
    {%- if is_incremental() %}
        and earlier_arrivals.transaction_id is null
    {%- endif %}

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
        source_file

    from first_arrivals

)

select * from final
