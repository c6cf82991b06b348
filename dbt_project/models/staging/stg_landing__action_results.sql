with

source as (

    select * from {{ source('landing', 'action_results') }}

),

renamed as (

    select

        ----------  ids
        decision_id,
        customer_id,

        ---------- text
        action,
        channel,
        status,

        ---------- booleans
        -- the action reached the customer
        status in ('delivered', 'answered', 'redeemed') as is_contact,

        ---------- dates
        cast(result_at as date) as result_date,

        ---------- timestamps
        result_at,

        ---------- lineage
        partition_date,
        source_file

    from source

),

deduplicated as (

    -- a key delivered twice within one landing partition: the latest result counts
    select
        *,
        row_number() over (
            partition by decision_id, partition_date
            order by result_at desc, source_file, status
        ) as row_in_partition

    from renamed

),

final as (

    select
        decision_id,
        customer_id,
        action,
        channel,
        status,
        is_contact,
        result_date,
        result_at,
        partition_date,
        source_file

    from deduplicated
    where row_in_partition = 1

)

select * from final
