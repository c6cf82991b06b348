with

source as (

    select * from {{ source('landing', 'transactions') }}

),

renamed as (

    select

        ----------  ids
        transaction_id,
        customer_id,

        ---------- text
        category,

        ---------- numerics
        -- money in cents: exact sums, so every build order gives the same totals
        cast(round(amount, 2) as decimal(18, 2)) as amount,

        ---------- booleans
        is_discounted,

        ---------- dates
        cast(transaction_at as date) as transaction_date,

        ---------- timestamps
        transaction_at,

        ---------- lineage
        partition_date,
        source_file

    from source

),

deduplicated as (

    -- a key delivered twice within one landing partition counts once
    select
        *,
        row_number() over (
            partition by transaction_id, partition_date
            order by source_file, transaction_at, amount, customer_id
        ) as row_in_partition

    from renamed

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

    from deduplicated
    where row_in_partition = 1

)

select * from final
