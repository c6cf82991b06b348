{{
    config(
        incremental_strategy='replace_range',
        incremental_predicates=['as_of_date between __start_date__ and __end_date__'],
    )
}}

{#-
    One row per (customer_id, as_of_date) for customers active at d: signed up by d
    and purchased within the last active_window_days. Point in time: a row counts
    at d only when it had arrived by d (partition_date <= d) and its event day is
    <= d. A bulk build (many as_of_dates) reads only the arrivals and events of the
    last feature_lookback_days() before its first as_of_date and those of its
    range; a nightly build reads the day's customer states (below). Both give the
    same rows.
-#}

{%- set lookback_days = feature_lookback_days() -%}
{%- set active_window_days = var('active_window_days') | int -%}
{%- set windows = feature_windows() -%}
{%- set earliest_date = shift_date(run_start_date(), -lookback_days) -%}

{%- set every = run_every() -%}
{%- set first_as_of_date = run_first_as_of_date() -%}
{%- set last_as_of_date = run_last_as_of_date() -%}

{%- set summed = feature_sums() -%}
{%- set offsets = feature_sum_offsets() -%}

{#-
    A nightly build (one as_of_date, added to the table) reads the day's customer
    states (int_customer_states, carried from the night before) instead of the
    look-back; every other build runs the query below. Both give the same rows.
-#}
{%- set from_states = namespace(value=false) -%}
{%- if execute and is_incremental() and run_start_date() == run_end_date()
    and load_relation(ref('int_customer_states')) is not none -%}
    {%- set states = run_query(
        "select count(*) from " ~ ref('int_customer_states')
        ~ " where state_date = " ~ date_literal(run_end_date())
    ) -%}
    {%- set from_states.value = states.columns[0].values()[0] > 0 -%}
{%- endif -%}

{#-
    How it is computed: every feature at d is a function of the rows known at d,
    and that set changes only on a few days. A row is known from
    known_on = greatest(activity_date, partition_date) (the landing gate quarantines
    event days after their partition, so this is the partition date) and counts in
    a window until it leaves it. So each row turns into entry and exit events, the
    events become running totals per customer, and each as_of_date takes the latest
    totals (ASOF join). The cost grows with the rows and the dates, not with
    dates x look-back. Sums of integers and decimals are exact, so the nightly
    build (one as_of_date) and a bulk build (many) give the same rows.
-#}

-- depends_on: {{ ref('int_customer_states') }}

with

{% if from_states.value %}

states as (

    select * from {{ ref('int_customer_states') }}
    where state_date = {{ date_literal(run_end_date()) }}

),

state_gaps as (

    -- the gaps between consecutive purchase days of the active window
    select
        customer_id,
        coalesce(len(gaps), 0) as gap_count,
        coalesce(list_sum(gaps), 0) as gap_sum,
        coalesce(list_sum(list_transform(gaps, lambda gap: gap * gap)), 0)
            as gap_square_sum

    from (
        select
            customer_id,
            list_transform(
                range(1, len(days)),
                lambda i: {{ dbt.datediff('days[i]', 'days[i + 1]', 'day') }}
            ) as gaps
        from (
            select
                customer_id,
                list_filter(
                    purchase_days_listed,
                    lambda day: day > {{ date_literal(shift_date(run_end_date(), -active_window_days)) }}
                ) as days
            from states
        )
    )

),

active_customers as (

    select
        states.state_date as as_of_date,
        states.customer_id,
        {{ activity_summary_columns('states', 'states.state_date') }},
        state_gaps.gap_count,
        state_gaps.gap_sum,
        state_gaps.gap_square_sum

    from states
    inner join state_gaps
        on states.customer_id = state_gaps.customer_id
    where states.last_purchase_date is not null
        and {{ dbt.datediff('states.last_purchase_date', 'states.state_date', 'day') }}
            < {{ active_window_days }}

),

known_customers as (

    select
        state_date as as_of_date,
        customer_id,
        signup_date,
        plan,
        region,
        acquisition_channel

    from states
    where attributes_updated_at is not null
        and signup_date <= state_date

),

lifetimes as (

    select
        customer_id,
        state_date as as_of_date,
        {%- for column in lifetime_state_columns() %}
        lifetime_{{ column }} as {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}

    from states
    where lifetime_purchase_days is not null

),

{% else %}

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

lifetime_states as (

    -- an active customer's latest state has a purchase in the look-back, so
    -- nothing older is read (see int_customer_lifetimes_accumulated)
    select * from {{ ref('int_customer_lifetimes_accumulated') }}
    where known_on > {{ date_literal(earliest_date) }}
        and known_on <= {{ date_literal(run_end_date()) }}

),

as_of_dates as (

    {{ as_of_dates_spine() }}

),

known_rows as (

    -- each row as known from the day it arrived; a purchase day counts once
    -- towards purchase_days_90d, on the first row of it that arrived
    select
        customer_days.*,
        greatest(customer_days.activity_date, customer_days.partition_date)
            as known_on,
        {{ first_arrival_flag('customer_days') }} as first_purchase_rows

    from customer_days

),

offsets as (

    -- null: the day a row becomes known; a number: activity_date + that many days
    select cast(offset_days as integer) as offset_days
    from (
        values (null){% for day in offsets %}, ({{ day }}){% endfor %}
    ) as event_offsets (offset_days)

),

row_events as (

    select
        known_rows.customer_id,
        coalesce(
            {{ add_days('known_rows.activity_date', 'offsets.offset_days') }},
            known_rows.known_on
        ) as event_date,
        case
            when offsets.offset_days is null and known_rows.purchases > 0
                then known_rows.activity_date
        end as purchase_date,
        case
            when offsets.offset_days is null and known_rows.contacts > 0
                then known_rows.activity_date
        end as contact_date,
        {%- for name, value, lo, hi in summed %}
        case
            when offsets.offset_days is null
                and known_rows.known_on >= {{ add_days('known_rows.activity_date', lo) }}
                and known_rows.known_on < {{ add_days('known_rows.activity_date', hi) }}
                then {{ value }}
            {%- if lo > 0 %}
            when offsets.offset_days = {{ lo }}
                and known_rows.known_on < {{ add_days('known_rows.activity_date', lo) }}
                then {{ value }}
            {%- endif %}
            when offsets.offset_days = {{ hi }}
                and known_rows.known_on < {{ add_days('known_rows.activity_date', hi) }}
                then -({{ value }})
            else 0
        end as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from known_rows
    cross join offsets

),

day_events as (

    -- the events of each customer summed per as_of_date: an event counts from the
    -- first as_of_date on or after its day (a nightly build has one date, so the
    -- running totals below have one row per customer). The as_of_dates are
    -- first, first + every, ..., last, so that date is computed from the event's
    -- day, and the events are summed as they stream from row_events: an ASOF join
    -- with the dates sorts every event first (at a million customers, hundreds of
    -- millions of wide rows, spilled to tens of GB).
    select
        customer_id,
        {{ add_days(date_literal(first_as_of_date), 'event_step * ' ~ every) }}
            as event_date,
        max(purchase_date) as purchase_date,
        max(contact_date) as contact_date,
        {%- for name, value, lo, hi in summed %}
        sum({{ name }}) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from (
        select
            row_events.*,
            greatest(
                0,
                ({{ dbt.datediff(date_literal(first_as_of_date), 'row_events.event_date', 'day') }}
                    + {{ every - 1 }}) // {{ every }}
            ) as event_step
        from row_events
        where row_events.event_date <= {{ date_literal(last_as_of_date) }}
    ) as stepped_events
    group by customer_id, event_step

),

running_totals as (

    -- the state of each customer on the as_of_date event_date
    select
        customer_id,
        event_date,
        max(purchase_date) over customer_history as last_purchase_date,
        max(contact_date) over customer_history as last_contact_date,
        {%- for name, value, lo, hi in summed %}
        sum({{ name }}) over customer_history as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from day_events
    window customer_history as (
        partition by customer_id
        order by event_date
        rows between unbounded preceding and current row
    )

),

purchase_days as (

    -- each purchase day, known from the first of its rows to arrive
    select
        customer_id,
        activity_date,
        min(known_on) as known_on

    from known_rows
    where purchases > 0
    group by customer_id, activity_date

),

customer_spans as (

    -- a customer can be active only from their first known purchase day until the
    -- active window after their last purchase day has passed
    select
        customer_id,
        min(known_on) as first_known_on,
        {{ add_days('max(activity_date)', active_window_days - 1) }} as last_active_on

    from purchase_days
    group by customer_id

),

customer_dates as (

    select customer_spans.customer_id, as_of_dates.as_of_date
    from customer_spans
    inner join as_of_dates
        on as_of_dates.as_of_date >= customer_spans.first_known_on
        and as_of_dates.as_of_date <= customer_spans.last_active_on

),

all_gap_change_dates as (

    -- the set of purchase days in the active window changes only when a day
    -- becomes known or leaves the window
    select customer_id, known_on as change_date from purchase_days
    union
    select
        customer_id,
        {{ add_days('activity_date', active_window_days) }} as change_date
    from purchase_days

),

gap_change_dates as (

    -- the change dates some as_of_date reads: the last one on or before it
    select distinct
        customer_dates.customer_id,
        all_gap_change_dates.change_date

    from customer_dates
    asof join all_gap_change_dates
        on customer_dates.customer_id = all_gap_change_dates.customer_id
        and customer_dates.as_of_date >= all_gap_change_dates.change_date

),

window_purchase_days as (

    select
        gap_change_dates.customer_id,
        gap_change_dates.change_date,
        purchase_days.activity_date,
        lag(purchase_days.activity_date) over (
            partition by gap_change_dates.customer_id, gap_change_dates.change_date
            order by purchase_days.activity_date
        ) as previous_activity_date

    from gap_change_dates
    inner join purchase_days
        on gap_change_dates.customer_id = purchase_days.customer_id
        and purchase_days.known_on <= gap_change_dates.change_date
        and purchase_days.activity_date
            > {{ add_days('gap_change_dates.change_date', -active_window_days) }}

),

gap_sums as (

    -- integer sums, so mean and deviation do not depend on the summation order;
    -- every change date has a row, also when it leaves fewer than two days
    select
        gap_change_dates.customer_id,
        gap_change_dates.change_date,
        count(gaps.gap_days) as gap_count,
        coalesce(sum(gaps.gap_days), 0) as gap_sum,
        coalesce(sum(gaps.gap_days * gaps.gap_days), 0) as gap_square_sum

    from gap_change_dates
    left join (
        select
            customer_id,
            change_date,
            {{ dbt.datediff('previous_activity_date', 'activity_date', 'day') }}
                as gap_days
        from window_purchase_days
        where previous_activity_date is not null
    ) as gaps
        on gap_change_dates.customer_id = gaps.customer_id
        and gap_change_dates.change_date = gaps.change_date
    group by gap_change_dates.customer_id, gap_change_dates.change_date

),

known_totals as (

    select
        customer_dates.as_of_date,
        running_totals.*

    from customer_dates
    asof join running_totals
        on customer_dates.customer_id = running_totals.customer_id
        and customer_dates.as_of_date >= running_totals.event_date

),

activity_summary as (

    select
        known_totals.as_of_date,
        known_totals.customer_id,
        {{ activity_summary_columns('known_totals', 'known_totals.as_of_date') }}

    from known_totals

),

active_customers as (

    select
        activity_summary.*,
        gap_sums.gap_count,
        gap_sums.gap_sum,
        gap_sums.gap_square_sum

    from activity_summary
    asof left join gap_sums
        on activity_summary.customer_id = gap_sums.customer_id
        and activity_summary.as_of_date >= gap_sums.change_date
    where activity_summary.recency_days < {{ active_window_days }}

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

lifetimes as (

    -- each active customer's whole history as known on as_of_date
    select
        active_customers.customer_id,
        active_customers.as_of_date,
        lifetime_states.first_purchase_date,
        lifetime_states.last_purchase_date,
        lifetime_states.purchase_days,
        lifetime_states.purchases,
        lifetime_states.spend,
        lifetime_states.spend_points,
        lifetime_states.day_sum,
        lifetime_states.day_square_sum,
        lifetime_states.spend_day_sum,
        lifetime_states.gap_count,
        lifetime_states.gap_sum,
        lifetime_states.gap_square_sum

    from active_customers
    asof inner join lifetime_states
        on active_customers.customer_id = lifetime_states.customer_id
        and active_customers.as_of_date >= lifetime_states.known_on

),

{% endif %}

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
            cast(active_customers.gap_sum as double)
                / nullif(active_customers.gap_count, 0),
            {{ active_window_days }}
        ) as gap_mean_days,
        {{ population_std('active_customers.gap_count', 'active_customers.gap_sum', 'active_customers.gap_square_sum') }} as gap_std_days,

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
            as days_since_last_contact,

        ---------- the whole history as known on as_of_date (not capped)
        cast(lifetimes.purchase_days as integer) as lifetime_purchase_days,
        -- repeat purchase days, first purchase day to last, and first to d: the
        -- (x, t_x, T) of the BG/NBD model, in days
        cast(lifetimes.purchase_days - 1 as integer) as lifetime_repeat_days,
        cast({{ dbt.datediff('lifetimes.first_purchase_date', 'lifetimes.last_purchase_date', 'day') }} as integer)
            as lifetime_recency_days,
        cast({{ dbt.datediff('lifetimes.first_purchase_date', 'active_customers.as_of_date', 'day') }} as integer)
            as lifetime_days,
        cast(lifetimes.purchases as integer) as lifetime_tx_count,
        cast(lifetimes.spend as double) as lifetime_spend,
        cast(lifetimes.spend as double) / lifetimes.purchases as lifetime_avg_spend,
        -- least-squares slope of spend per arriving row against its day
        coalesce(
            cast(
                lifetimes.spend_points * lifetimes.spend_day_sum
                - lifetimes.day_sum * lifetimes.spend
                as double
            ) / nullif(
                cast(
                    lifetimes.spend_points * lifetimes.day_square_sum
                    - lifetimes.day_sum * lifetimes.day_sum
                    as double
                ),
                0
            ),
            0
        ) as lifetime_spend_slope,
        -- gaps between purchase days in arrival order; with no gap yet, the days
        -- since the first purchase
        coalesce(
            cast(lifetimes.gap_sum as double) / nullif(lifetimes.gap_count, 0),
            {{ dbt.datediff('lifetimes.first_purchase_date', 'active_customers.as_of_date', 'day') }}
        ) as lifetime_gap_mean_days,
        {{ population_std('lifetimes.gap_count', 'lifetimes.gap_sum', 'lifetimes.gap_square_sum') }} as lifetime_gap_std_days

    from active_customers
    inner join known_customers
        on active_customers.as_of_date = known_customers.as_of_date
        and active_customers.customer_id = known_customers.customer_id
    inner join lifetimes
        on active_customers.as_of_date = lifetimes.as_of_date
        and active_customers.customer_id = lifetimes.customer_id

)

select * from final
