{{
    config(
        incremental_strategy='replace_range',
        incremental_predicates=[run_range_predicate('as_of_date')],
    )
}}

{#-
    One row per (customer_id, as_of_date) for customers active at d: signed up by d
    and purchased within the last active_window_days. Point in time: a row counts
    at d only when it had arrived by d (partition_date <= d) and its event day is
    <= d. The nightly build (one as_of_date) and a bulk build (many) run this same
    query, so they give the same rows; each as_of_date reads only the last
    feature_lookback_days() of arrivals and events.
-#}

{%- set lookback_days = feature_lookback_days() -%}
{%- set active_window_days = var('active_window_days') | int -%}
{%- set windows = feature_windows() -%}
{%- set categories = var('categories') -%}
{%- set earliest_date = shift_date(run_start_date(), -lookback_days) -%}

with

customer_days as (

    select * from {{ ref('int_customer_days_aggregated') }}
    where partition_date > {{ date_literal(earliest_date) }}
        and partition_date <= {{ date_literal(run_end_date()) }}
        and activity_date > {{ date_literal(earliest_date) }}
        and activity_date <= {{ date_literal(run_end_date()) }}

),

customer_versions as (

    select * from {{ ref('stg_landing__customers') }}
    where partition_date <= {{ date_literal(run_end_date()) }}
        and cast(updated_at as date) <= {{ date_literal(run_end_date()) }}

),

as_of_dates as (

    {{ as_of_dates_spine() }}

),

known_arrivals as (

    -- as known on d: arrived by d, event day in (d - lookback, d]; the sums below
    -- add up over arrivals, so rows of one day that arrived apart need no merging
    select
        as_of_dates.as_of_date,
        customer_days.*,
        {{ dbt.datediff('customer_days.activity_date', 'as_of_dates.as_of_date', 'day') }}
            as days_ago

    from as_of_dates
    inner join customer_days
        on customer_days.partition_date <= as_of_dates.as_of_date
        and customer_days.partition_date
            > {{ add_days('as_of_dates.as_of_date', -lookback_days) }}
        and customer_days.activity_date <= as_of_dates.as_of_date
        and customer_days.activity_date
            > {{ add_days('as_of_dates.as_of_date', -lookback_days) }}

),

purchase_days as (

    -- distinct purchase days within the active window, each with the one before
    select
        as_of_date,
        customer_id,
        activity_date,
        lag(activity_date) over (
            partition by as_of_date, customer_id
            order by activity_date
        ) as previous_activity_date

    from (
        select distinct
            as_of_date,
            customer_id,
            activity_date

        from known_arrivals
        where purchases > 0
            and days_ago < {{ active_window_days }}
    ) as known_purchase_days

),

purchase_gaps as (

    select
        as_of_date,
        customer_id,
        {{ dbt.datediff('previous_activity_date', 'activity_date', 'day') }}
            as gap_days

    from purchase_days
    where previous_activity_date is not null

),

gap_sums as (

    -- integer sums, so mean and deviation do not depend on the summation order
    select
        as_of_date,
        customer_id,
        count(gap_days) as gap_count,
        sum(gap_days) as gap_sum,
        sum(gap_days * gap_days) as gap_square_sum

    from purchase_gaps
    group by as_of_date, customer_id

),

activity_summary as (

    select
        as_of_date,
        customer_id,
        min(case when purchases > 0 then days_ago end) as recency_days,
        {%- for window in windows %}
        sum(case when days_ago < {{ window }} then purchases else 0 end)
            as tx_count_{{ window }}d,
        sum(case when days_ago < {{ window }} then spend else 0 end)
            as spend_{{ window }}d,
        {%- endfor %}
        sum(case when days_ago >= 30 and days_ago < 60 then purchases else 0 end)
            as tx_count_prior_30d,
        sum(case when days_ago >= 30 and days_ago < 60 then spend else 0 end)
            as spend_prior_30d,
        count(distinct case when days_ago < 90 and purchases > 0 then activity_date end)
            as purchase_days_90d,
        sum(case when days_ago < 90 then discounted_purchases else 0 end)
            as discounted_tx_count_90d,
        (
            {%- for category in categories %}
            max(case when days_ago < 90 and {{ category }}_purchases > 0 then 1 else 0 end)
            {{- ' +' if not loop.last }}
            {%- endfor %}
        ) as category_count_90d,
        sum(case when days_ago < 30 then tickets else 0 end) as tickets_30d,
        sum(case when days_ago < 90 then tickets else 0 end) as tickets_90d,
        sum(case when days_ago < 90 then complaint_tickets else 0 end)
            as complaint_tickets_90d,
        sum(case when days_ago < 90 then high_severity_tickets else 0 end)
            as high_severity_tickets_90d,
        sum(case when days_ago < 90 then contacts else 0 end) as contacts_90d,
        min(case when contacts > 0 then days_ago end) as days_since_last_contact

    from known_arrivals
    group by as_of_date, customer_id

),

active_customers as (

    select * from activity_summary
    where recency_days < {{ active_window_days }}

),

ranked_versions as (

    -- the customer's attributes as known on d: the latest version that had arrived
    select
        active_customers.as_of_date,
        active_customers.customer_id,
        customer_versions.signup_date,
        customer_versions.plan,
        customer_versions.region,
        customer_versions.acquisition_channel,
        row_number() over (
            partition by active_customers.as_of_date, active_customers.customer_id
            order by
                customer_versions.updated_at desc,
                customer_versions.partition_date desc,
                customer_versions.source_file desc
        ) as version_rank

    from active_customers
    inner join customer_versions
        on active_customers.customer_id = customer_versions.customer_id
        and customer_versions.partition_date <= active_customers.as_of_date
        and cast(customer_versions.updated_at as date) <= active_customers.as_of_date

),

known_customers as (

    select * from ranked_versions
    where version_rank = 1
        and signup_date <= as_of_date

),

final as (

    select
        active_customers.customer_id,
        active_customers.as_of_date,

        ---------- attributes as known on as_of_date
        known_customers.plan,
        known_customers.region,
        known_customers.acquisition_channel,
        cast({{ dbt.datediff('known_customers.signup_date', 'active_customers.as_of_date', 'day') }} as integer)
            as tenure_days,

        ---------- recency, frequency, monetary
        cast(active_customers.recency_days as integer) as recency_days,
        {%- for window in windows %}
        cast(active_customers.tx_count_{{ window }}d as integer) as tx_count_{{ window }}d,
        {%- endfor %}
        {%- for window in windows %}
        cast(active_customers.spend_{{ window }}d as double) as spend_{{ window }}d,
        {%- endfor %}
        case
            when active_customers.tx_count_90d > 0
                then cast(active_customers.spend_90d as double)
                    / active_customers.tx_count_90d
            else 0
        end as avg_basket_90d,
        cast(active_customers.purchase_days_90d as integer) as purchase_days_90d,

        ---------- trends: last 30 days minus the 30 days before
        cast(
            active_customers.tx_count_30d - active_customers.tx_count_prior_30d
            as integer
        ) as freq_trend_30d,
        cast(
            active_customers.spend_30d - active_customers.spend_prior_30d as double
        ) as spend_trend_30d,

        ---------- rhythm: gaps between purchase days in the active window
        -- with fewer than two purchase days no gap is seen inside the window
        coalesce(
            cast(gap_sums.gap_sum as double) / gap_sums.gap_count,
            {{ active_window_days }}
        ) as gap_mean_days,
        coalesce(
            sqrt(
                greatest(
                    cast(
                        gap_sums.gap_count * gap_sums.gap_square_sum
                        - gap_sums.gap_sum * gap_sums.gap_sum
                        as double
                    ),
                    0
                )
            ) / gap_sums.gap_count,
            0
        ) as gap_std_days,

        ---------- mix
        cast(active_customers.category_count_90d as integer) as category_count_90d,
        case
            when active_customers.tx_count_90d > 0
                then cast(active_customers.discounted_tx_count_90d as double)
                    / active_customers.tx_count_90d
            else 0
        end as discount_share_90d,

        ---------- service and contacts
        cast(active_customers.tickets_30d as integer) as tickets_30d,
        cast(active_customers.tickets_90d as integer) as tickets_90d,
        cast(active_customers.complaint_tickets_90d as integer)
            as complaint_tickets_90d,
        cast(active_customers.high_severity_tickets_90d as integer)
            as high_severity_tickets_90d,
        cast(active_customers.contacts_90d as integer) as contacts_90d,
        cast(active_customers.days_since_last_contact as integer)
            as days_since_last_contact

    from active_customers
    inner join known_customers
        on active_customers.as_of_date = known_customers.as_of_date
        and active_customers.customer_id = known_customers.customer_id
    left join gap_sums
        on active_customers.as_of_date = gap_sums.as_of_date
        and active_customers.customer_id = gap_sums.customer_id

)

select * from final
