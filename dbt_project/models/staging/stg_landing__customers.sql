with

source as (

    select * from {{ source('landing', 'customers') }}

),

renamed as (

    select

        ----------  ids
        customer_id,

        ---------- text
        plan,
        region,
        acquisition_channel,

        ---------- dates
        signup_date,

        ---------- timestamps
        updated_at,

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
            partition by customer_id, updated_at, partition_date
            order by source_file, signup_date, plan, region, acquisition_channel
        ) as row_in_partition

    from renamed

),

final as (

    select
        customer_id,
        plan,
        region,
        acquisition_channel,
        signup_date,
        updated_at,
        partition_date,
        source_file

    from deduplicated
    where row_in_partition = 1

)

select * from final
