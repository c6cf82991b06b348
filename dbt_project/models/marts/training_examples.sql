{{ config(materialized='view') }}

{#-
    A feature snapshot joined with its label once the label exists (d + H in the
    run). A view, not a table: a stored copy would write the whole feature row of
    d - H again every night. Readers filter by as_of_date, which DuckDB pushes
    into both tables' scans.
-#}

with

customer_features as (

    select * from {{ ref('customer_features') }}

),

churn_labels as (

    select * from {{ ref('churn_labels') }}

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
