{{
    config(
        incremental_strategy='replace_range',
        incremental_predicates=['partition_date between __start_date__ and __end_date__'],
    )
}}

{#-
    Daily activity per customer, kept apart by arrival: one row per
    (customer_id, activity_date, partition_date). A late row adds a row under the
    day it arrived, so "as known on d" is simply partition_date <= d. A nightly
    build aggregates only its own partition (see run_partitions).
-#}

{%- set categories = var('categories') -%}

with

transactions as (

    select * from {{ ref('int_transactions_deduplicated') }}
    where {{ run_partitions() }}

),

support_tickets as (

    select * from {{ ref('stg_landing__support_tickets') }}
    where {{ run_partitions() }}

),

action_results as (

    select * from {{ ref('stg_landing__action_results') }}
    where {{ run_partitions() }}

),

purchase_days as (

    select
        customer_id,
        transaction_date as activity_date,
        partition_date,
        count(*) as purchases,
        sum(amount) as spend,
        sum(case when is_discounted then 1 else 0 end) as discounted_purchases,
        {%- for category in categories %}
        sum(case when category = '{{ category }}' then 1 else 0 end)
            as {{ category }}_purchases,
        {%- endfor %}
        count(distinct category) as distinct_categories

    from transactions
    group by customer_id, transaction_date, partition_date

),

ticket_days as (

    select
        customer_id,
        opened_date as activity_date,
        partition_date,
        count(*) as tickets,
        sum(case when is_complaint then 1 else 0 end) as complaint_tickets,
        sum(case when is_high_severity then 1 else 0 end) as high_severity_tickets

    from support_tickets
    group by customer_id, opened_date, partition_date

),

action_result_days as (

    select
        customer_id,
        result_date as activity_date,
        partition_date,
        count(*) as action_results,
        sum(case when is_contact then 1 else 0 end) as contacts

    from action_results
    group by customer_id, result_date, partition_date

),

customer_days as (

    select customer_id, activity_date, partition_date from purchase_days
    union
    select customer_id, activity_date, partition_date from ticket_days
    union
    select customer_id, activity_date, partition_date from action_result_days

),

final as (

    select
        customer_days.customer_id,
        customer_days.activity_date,
        customer_days.partition_date,
        cast(coalesce(purchase_days.purchases, 0) as integer) as purchases,
        cast(coalesce(purchase_days.spend, 0) as decimal(18, 2)) as spend,
        cast(coalesce(purchase_days.discounted_purchases, 0) as integer)
            as discounted_purchases,
        cast(coalesce(purchase_days.distinct_categories, 0) as integer)
            as distinct_categories,
        {%- for category in categories %}
        cast(coalesce(purchase_days.{{ category }}_purchases, 0) as integer)
            as {{ category }}_purchases,
        {%- endfor %}
        cast(coalesce(ticket_days.tickets, 0) as integer) as tickets,
        cast(coalesce(ticket_days.complaint_tickets, 0) as integer)
            as complaint_tickets,
        cast(coalesce(ticket_days.high_severity_tickets, 0) as integer)
            as high_severity_tickets,
        cast(coalesce(action_result_days.action_results, 0) as integer)
            as action_results,
        cast(coalesce(action_result_days.contacts, 0) as integer) as contacts

    from customer_days
    left join purchase_days
        on customer_days.customer_id = purchase_days.customer_id
        and customer_days.activity_date = purchase_days.activity_date
        and customer_days.partition_date = purchase_days.partition_date
    left join ticket_days
        on customer_days.customer_id = ticket_days.customer_id
        and customer_days.activity_date = ticket_days.activity_date
        and customer_days.partition_date = ticket_days.partition_date
    left join action_result_days
        on customer_days.customer_id = action_result_days.customer_id
        and customer_days.activity_date = action_result_days.activity_date
        and customer_days.partition_date = action_result_days.partition_date

)

select * from final
