{{
    config(
        materialized='table',
    )
}}

{#-
    A dimension, rebuilt on each run as known at end_date: its size is the customer
    base. Purchase dates come from the daily activity table (two narrow columns).
-#}

with

customer_versions as (

    select * from {{ ref('stg_landing__customers') }}
    where partition_date <= {{ date_literal(run_end_date()) }}
        and cast(updated_at as date) <= {{ date_literal(run_end_date()) }}

),

customer_days as (

    select * from {{ ref('int_customer_days_aggregated') }}
    where partition_date <= {{ date_literal(run_end_date()) }}
        and activity_date <= {{ date_literal(run_end_date()) }}
        and purchases > 0

),

ranked_versions as (

    select
        *,
        row_number() over (
            partition by customer_id
            order by updated_at desc, partition_date desc, source_file desc
        ) as version_rank

    from customer_versions

),

purchase_dates as (

    select
        customer_id,
        min(activity_date) as first_purchase_date,
        max(activity_date) as last_purchase_date

    from customer_days
    group by customer_id

),

final as (

    select
        ranked_versions.customer_id,
        ranked_versions.signup_date,
        ranked_versions.plan,
        ranked_versions.region,
        ranked_versions.acquisition_channel,
        purchase_dates.first_purchase_date,
        purchase_dates.last_purchase_date,
        ranked_versions.updated_at as attributes_updated_at,
        {{ date_literal(run_end_date()) }} as as_of_date

    from ranked_versions
    left join purchase_dates
        on ranked_versions.customer_id = purchase_dates.customer_id
    where ranked_versions.version_rank = 1

)

select * from final
