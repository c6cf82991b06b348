{{
    config(
        incremental_strategy='replace_range',
        incremental_predicates=[
            'as_of_date between __label_start_date__ and __label_end_date__',
        ],
    )
}}

{#-
    churned at d: no purchase with event day in (d, d + H] among the rows that had
    arrived by d + H. A build labels the feature snapshots d with d + H inside its
    date range, so no label exists before its horizon has passed: the nightly run
    of day r labels d = r - H.
-#}

{%- set horizon_days = var('horizon_days') | int -%}
{%- set label_start_date = shift_date(run_start_date(), -horizon_days) -%}
{%- set label_end_date = shift_date(run_end_date(), -horizon_days) -%}

with

customer_features as (

    select * from {{ ref('customer_features') }}
    where as_of_date between {{ date_literal(label_start_date) }}
        and {{ date_literal(label_end_date) }}

),

customer_days as (

    select * from {{ ref('int_customer_days_aggregated') }}
    where purchases > 0
        and partition_date > {{ date_literal(label_start_date) }}
        and partition_date <= {{ date_literal(run_end_date()) }}
        and activity_date > {{ date_literal(label_start_date) }}
        and activity_date <= {{ date_literal(run_end_date()) }}

),

horizon_purchases as (

    select
        customer_features.customer_id,
        customer_features.as_of_date,
        sum(customer_days.purchases) as purchases,
        sum(customer_days.spend) as spend

    from customer_features
    inner join customer_days
        on customer_features.customer_id = customer_days.customer_id
        and customer_days.activity_date > customer_features.as_of_date
        and customer_days.activity_date
            <= {{ add_days('customer_features.as_of_date', horizon_days) }}
        and customer_days.partition_date > customer_features.as_of_date
        and customer_days.partition_date
            <= {{ add_days('customer_features.as_of_date', horizon_days) }}
    group by customer_features.customer_id, customer_features.as_of_date

),

final as (

    select
        customer_features.customer_id,
        customer_features.as_of_date,
        coalesce(horizon_purchases.purchases, 0) = 0 as churned,
        {{ horizon_days }} as horizon_days,
        {{ add_days('customer_features.as_of_date', horizon_days) }}
            as horizon_end_date,
        cast(coalesce(horizon_purchases.purchases, 0) as integer)
            as horizon_purchases,
        cast(coalesce(horizon_purchases.spend, 0) as double) as horizon_spend

    from customer_features
    left join horizon_purchases
        on customer_features.customer_id = horizon_purchases.customer_id
        and customer_features.as_of_date = horizon_purchases.as_of_date

)

select * from final
