{{
    config(
        incremental_strategy='replace_range',
        incremental_predicates=['known_on between __start_date__ and __end_date__'],
    )
}}

{#-
    Each customer's whole purchase history as known on a day: one row per
    (customer_id, known_on) for every landing partition that brought the customer a
    purchase. The row holds running totals over every partition up to known_on, so
    the state on any day d is the customer's latest row with known_on <= d (an
    ASOF join; see customer_features).

    The state is carried forward, not recomputed: an incremental build reads only
    its own partitions and, for the customers they touch, the latest row before
    them. A build from scratch reads every partition up to end_date. Sums are of
    integers and decimals, so a nightly build and a bulk build give the same rows.

    * A purchase day counts once, at its first arrival; a later row of the same
      day adds purchases and spend only.
    * Gaps between purchase days are taken in arrival order: a new day after the
      latest known one adds the gap to it; a day that arrives late, before the
      latest known one, adds no gap (the totals of days and spend still count it).
    * The spend trend is the least-squares slope of each arriving row's spend
      against its day, kept as sums (n, sum t, sum t^2, sum s, sum t*s) with t in
      days since 1970-01-01.
-#}

{#- the running totals of the state and their types (gap_* from partition_gaps) -#}
{%- set state_totals = [
    ('purchase_days', 'integer'), ('purchases', 'integer'),
    ('spend', 'decimal(18, 2)'), ('spend_points', 'integer'),
    ('day_sum', 'bigint'), ('day_square_sum', 'hugeint'),
    ('spend_day_sum', 'decimal(38, 2)'), ('gap_count', 'integer'),
    ('gap_sum', 'bigint'), ('gap_square_sum', 'hugeint'),
] -%}

with

customer_days as (

    select * from {{ ref('int_customer_days_aggregated') }}
    where {{ run_partitions() }}
        and purchases > 0

),

{% if is_incremental() %}

touched_customers as (

    select distinct customer_id from customer_days

),

earlier_days as (

    -- purchase days of the touched customers that arrived before this build
    select distinct
        earlier.customer_id,
        earlier.activity_date

    from {{ ref('int_customer_days_aggregated') }} as earlier
    inner join customer_days
        on earlier.customer_id = customer_days.customer_id
        and earlier.activity_date = customer_days.activity_date
    where earlier.purchases > 0
        and earlier.partition_date < {{ date_literal(run_start_date()) }}

),

prior_state as (

    -- the touched customers' latest state before this build
    select state.*
    from {{ this }} as state
    inner join touched_customers
        on state.customer_id = touched_customers.customer_id
    where state.known_on < {{ date_literal(run_start_date()) }}
    qualify row_number() over (
        partition by state.customer_id order by state.known_on desc
    ) = 1

),

{% endif %}

arrivals as (

    -- each arriving row, flagged when it is the first arrival of its day
    select
        customer_days.customer_id,
        customer_days.activity_date,
        customer_days.partition_date as known_on,
        customer_days.purchases,
        customer_days.spend,
        cast({{ dbt.datediff("cast('1970-01-01' as date)", 'customer_days.activity_date', 'day') }} as bigint)
            as day_number,
        case
            when row_number() over (
                partition by customer_days.customer_id, customer_days.activity_date
                order by customer_days.partition_date
            ) = 1
            {%- if is_incremental() %}
                and earlier_days.customer_id is null
            {%- endif %}
                then 1
            else 0
        end as is_new_day

    from customer_days
    {%- if is_incremental() %}
    left join earlier_days
        on customer_days.customer_id = earlier_days.customer_id
        and customer_days.activity_date = earlier_days.activity_date
    {%- endif %}

),

partition_totals as (

    select
        customer_id,
        known_on,
        min(activity_date) as first_activity_date,
        max(activity_date) as last_activity_date,
        sum(is_new_day) as purchase_days,
        sum(purchases) as purchases,
        sum(spend) as spend,
        count(*) as spend_points,
        sum(day_number) as day_sum,
        sum(day_number * day_number) as day_square_sum,
        sum(spend * day_number) as spend_day_sum

    from arrivals
    group by customer_id, known_on

),

latest_before as (

    -- the latest purchase day known before each partition of this build
    select
        partition_totals.customer_id,
        partition_totals.known_on,
        greatest(
            max(partition_totals.last_activity_date) over (
                partition by partition_totals.customer_id
                order by partition_totals.known_on
                rows between unbounded preceding and 1 preceding
            ){%- if is_incremental() %},
            prior_state.last_purchase_date
            {%- endif %}
        ) as last_known_date

    from partition_totals
    {%- if is_incremental() %}
    left join prior_state
        on partition_totals.customer_id = prior_state.customer_id
    {%- endif %}

),

new_day_gaps as (

    -- a new day after the latest known one: its gap to the day before it
    select
        arrivals.customer_id,
        arrivals.known_on,
        {{ dbt.datediff(
            'greatest(latest_before.last_known_date, lag(arrivals.activity_date) over (partition by arrivals.customer_id, arrivals.known_on order by arrivals.activity_date))',
            'arrivals.activity_date',
            'day',
        ) }} as gap_days

    from arrivals
    inner join latest_before
        on arrivals.customer_id = latest_before.customer_id
        and arrivals.known_on = latest_before.known_on
    where arrivals.is_new_day = 1
        and (
            latest_before.last_known_date is null
            or arrivals.activity_date > latest_before.last_known_date
        )

),

partition_gaps as (

    select
        customer_id,
        known_on,
        count(gap_days) as gap_count,
        coalesce(sum(gap_days), 0) as gap_sum,
        coalesce(sum(gap_days * gap_days), 0) as gap_square_sum

    from new_day_gaps
    group by customer_id, known_on

),

running as (

    select
        partition_totals.customer_id,
        partition_totals.known_on,
        min(partition_totals.first_activity_date) over history as first_purchase_date,
        max(partition_totals.last_activity_date) over history as last_purchase_date,
        {%- for column, type in state_totals %}
        {%- if column.startswith('gap_') %}
        sum(coalesce(partition_gaps.{{ column }}, 0)) over history as {{ column }}
        {%- else %}
        sum(partition_totals.{{ column }}) over history as {{ column }}
        {%- endif %}{{ ',' if not loop.last }}
        {%- endfor %}

    from partition_totals
    left join partition_gaps
        on partition_totals.customer_id = partition_gaps.customer_id
        and partition_totals.known_on = partition_gaps.known_on
    window history as (
        partition by partition_totals.customer_id
        order by partition_totals.known_on
        rows between unbounded preceding and current row
    )

),

final as (

    select
        running.customer_id,
        running.known_on,
        {%- if is_incremental() %}
        cast(least(running.first_purchase_date, prior_state.first_purchase_date) as date)
            as first_purchase_date,
        cast(greatest(running.last_purchase_date, prior_state.last_purchase_date) as date)
            as last_purchase_date,
        {%- else %}
        cast(running.first_purchase_date as date) as first_purchase_date,
        cast(running.last_purchase_date as date) as last_purchase_date,
        {%- endif %}
        {%- for column, type in state_totals %}
        cast(
            running.{{ column }}
            {%- if is_incremental() %} + coalesce(prior_state.{{ column }}, 0){% endif %}
            as {{ type }}
        ) as {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}

    from running
    {%- if is_incremental() %}
    left join prior_state
        on running.customer_id = prior_state.customer_id
    {%- endif %}

)

select * from final
