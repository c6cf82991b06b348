with

source as (

    select * from {{ source('landing', 'support_tickets') }}

),

renamed as (

    select

        ----------  ids
        ticket_id,
        customer_id,

        ---------- text
        topic,
        severity,

        ---------- booleans
        topic = 'complaint' as is_complaint,
        severity = 'high' as is_high_severity,

        ---------- dates
        cast(opened_at as date) as opened_date,

        ---------- timestamps
        opened_at,

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
            partition by ticket_id, partition_date
            order by source_file, opened_at, customer_id, topic, severity
        ) as row_in_partition

    from renamed

),

final as (

    select
        ticket_id,
        customer_id,
        topic,
        severity,
        is_complaint,
        is_high_severity,
        opened_date,
        opened_at,
        partition_date,
        source_file

    from deduplicated
    where row_in_partition = 1

)

select * from final
