with

source as (

    select * from {{ source('landing', 'review_decisions') }}

),

renamed as (

    select

        ----------  ids
        decision_id,
        customer_id,

        ---------- text
        reviewer,
        decision as review_decision,
        new_action,
        reason_code,
        note,

        ---------- dates
        cast(decided_at as date) as decided_date,

        ---------- timestamps
        decided_at,

        ---------- lineage
        partition_date,
        source_file

    from source

),

deduplicated as (

    -- the contract's rule: the latest decided_at wins (here within one partition)
    select
        *,
        row_number() over (
            partition by decision_id, partition_date
            order by decided_at desc, source_file, reviewer, review_decision
        ) as row_in_partition

    from renamed

),

final as (

    select
        decision_id,
        customer_id,
        reviewer,
        review_decision,
        new_action,
        reason_code,
        note,
        decided_date,
        decided_at,
        partition_date,
        source_file

    from deduplicated
    where row_in_partition = 1

)

select * from final
