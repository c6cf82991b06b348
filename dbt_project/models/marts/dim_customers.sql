{{
    config(
        materialized='table',
    )
}}

{#-
    A dimension as known at end_date, rebuilt on each run from the day's customer
    states (int_customer_states): its cost is the customer base, not the history.
    A customer is in it once a version of their attributes has arrived.
-#}

with

states as (

    select * from {{ ref('int_customer_states') }}
    where state_date = {{ date_literal(run_end_date()) }}
        and attributes_updated_at is not null

),

final as (

    select
        customer_id,
        signup_date,
        plan,
        region,
        acquisition_channel,
        lifetime_first_purchase_date as first_purchase_date,
        lifetime_last_purchase_date as last_purchase_date,
        attributes_updated_at,
        state_date as as_of_date

    from states

)

select * from final
