{{
    config(
        incremental_strategy='replace_range',
        incremental_predicates=[
            'as_of_date between __label_start_date__ and __label_end_date__',
        ],
    )
}}

{#- A feature snapshot joins its label once the label exists (d + H in the run). -#}

{%- set horizon_days = var('horizon_days') | int -%}
{%- set label_start_date = shift_date(run_start_date(), -horizon_days) -%}
{%- set label_end_date = shift_date(run_end_date(), -horizon_days) -%}

with

customer_features as (

    select * from {{ ref('customer_features') }}
    where as_of_date between {{ date_literal(label_start_date) }}
        and {{ date_literal(label_end_date) }}

),

churn_labels as (

    select * from {{ ref('churn_labels') }}
    where as_of_date between {{ date_literal(label_start_date) }}
        and {{ date_literal(label_end_date) }}

),

final as (

    select
        customer_features.*,
        churn_labels.churned,
        churn_labels.horizon_days,
        churn_labels.horizon_end_date,
        churn_labels.horizon_purchases,
        churn_labels.horizon_spend

    from customer_features
    inner join churn_labels
        on customer_features.customer_id = churn_labels.customer_id
        and customer_features.as_of_date = churn_labels.as_of_date

)

select * from final
