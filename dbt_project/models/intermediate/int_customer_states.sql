{{
    config(
        incremental_strategy='replace_range',
        incremental_predicates=['state_date between __start_date__ and __end_date__'],
        post_hook=[
            "delete from {{ this }} where state_date < "
            ~ "{{ date_literal(shift_date(run_end_date(), -var('state_keep_days'))) }}"
            ~ " and exists (select 1 from {{ this }} where state_date < "
            ~ "{{ date_literal(shift_date(run_end_date(), -2 * var('state_keep_days'))) }})"
        ],
    )
}}

{#-
    Everything customer_features needs of a customer on one day, carried from one
    night to the next: one row per (customer_id, state_date) for every customer
    known by state_date, written for the last date of each build only.

    * The summed features (see feature_sums) as exact running sums, the last
      purchase and contact day in the look-back, and the purchase days of the last
      purchase_list_days() days as a sorted list (the rhythm features' gaps).
    * The latest lifetime state (int_customer_lifetimes_accumulated) and the
      latest attribute version (stg_landing__customers) known by state_date.

    A nightly build whose previous day's state exists carries it forward: it reads
    that state, the day's partition, and the rows whose day is exactly one of the
    windows' edges ago (they enter or leave a window today), so its cost follows
    the customer base and the day's rows, not the look-back or the history. Any
    other build (the first, a bulk rebuild, a backfill whose previous state was
    pruned) computes the state from the look-back. Both give the same state;
    tests/integration/dbt/test_dbt_incremental.py holds them to it.

    Between state_keep_days and twice that many days of states are kept: older
    ones are never read again except by a rerun of an old night, which then
    computes its state from the look-back. They are pruned once the oldest is
    more than twice state_keep_days old, not every night: when a day's states
    fill only part of a row group, a delete makes the build's commit rewrite the
    partly deleted row groups (about 0.4 s a night at 51,000 customers in
    benchmarks/bench_state_prune.py; at a million customers a day fills whole
    row groups and it makes no difference).
-#}

{%- set lookback_days = feature_lookback_days() -%}
{%- set list_days = purchase_list_days() -%}
{%- set summed = feature_sums() -%}
{%- set offsets = feature_sum_offsets() -%}
{%- set end_date = run_end_date() -%}
{%- set window_start = shift_date(end_date, -lookback_days) -%}
{%- set list_start = shift_date(end_date, -list_days) -%}
{%- set carried = namespace(value=false) -%}
{%- if execute and is_incremental() and run_start_date() == end_date -%}
    {%- set previous = run_query(
        "select count(*) from " ~ this ~ " where state_date = "
        ~ date_literal(shift_date(end_date, -1))
    ) -%}
    {%- set carried.value = previous.columns[0].values()[0] > 0 -%}
{%- endif -%}
{#- the day's version wins unless the carried one was updated later (the carried
    one's partition is earlier, so a tie goes to the day's) -#}
{%- set take_new -%}
    (new_versions.customer_id is not null and (
        previous.attributes_updated_at is null
        or new_versions.updated_at >= previous.attributes_updated_at
    ))
{%- endset -%}
{%- set merged_purchase_days -%}
    list_sort(list_distinct(list_concat(
        list_filter(
            previous.purchase_days_listed,
            lambda day: day > {{ date_literal(list_start) }}
        ),
        arrival_changes.new_purchase_days
    )))
{%- endset -%}
{%- set lifetime_columns = lifetime_state_columns() -%}

with

{% if carried.value %}

previous as (

    select * from {{ this }}
    where state_date = {{ date_literal(shift_date(end_date, -1)) }}

),

arrivals as (

    -- the day's partition; a purchase day counts towards purchase_days_90d on its
    -- first row to arrive, so a row of a day already listed counts 0
    select
        days.*,
        {{ dbt.datediff('days.activity_date', date_literal(end_date), 'day') }}
            as days_ago,
        case
            when days.purchases > 0
                and not coalesce(
                    list_contains(previous.purchase_days_listed, days.activity_date),
                    false
                )
                then 1
            else 0
        end as first_purchase_rows

    from {{ ref('int_customer_days_aggregated') }} as days
    left join previous
        on days.customer_id = previous.customer_id
    where days.partition_date = {{ date_literal(end_date) }}
        and days.activity_date > {{ date_literal(window_start) }}
        and days.activity_date <= {{ date_literal(end_date) }}

),

crossings as (

    -- rows known before today whose day lies exactly a window edge ago: they
    -- enter (lo) or leave (hi) a window today
    select
        days.*,
        {{ dbt.datediff('days.activity_date', date_literal(end_date), 'day') }}
            as days_ago,
        {{ first_arrival_flag('days') }} as first_purchase_rows

    from {{ ref('int_customer_days_aggregated') }} as days
    where days.activity_date in (
            {%- for day in offsets %}
            {{ date_literal(shift_date(end_date, -day)) }}{{ ',' if not loop.last }}
            {%- endfor %}
        )
        and days.partition_date < {{ date_literal(end_date) }}

),

arrival_changes as (

    select
        customer_id,
        {{ window_state_aggregates('new_purchase_days', list_start) }}

    from arrivals
    group by customer_id

),

crossing_changes as (

    select
        customer_id,
        {%- for name, value, lo, hi in summed %}
        sum(
            case
                {%- if lo > 0 %}
                when days_ago = {{ lo }} then {{ value }}
                {%- endif %}
                when days_ago = {{ hi }} then -({{ value }})
                else 0
            end
        ) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from crossings
    group by customer_id

),

new_versions as (

    -- the landing gate quarantines an updated_at after its partition, so a
    -- version is known from its partition on
    select * from {{ ref('stg_landing__customers') }}
    where partition_date = {{ date_literal(end_date) }}
        and cast(updated_at as date) <= {{ date_literal(end_date) }}
    qualify row_number() over (
        partition by customer_id
        order by updated_at desc, source_file desc
    ) = 1

),

new_lifetimes as (

    select * from {{ ref('int_customer_lifetimes_accumulated') }}
    where known_on = {{ date_literal(end_date) }}

),

customers as (

    select customer_id from previous
    union
    select customer_id from arrival_changes
    union
    select customer_id from crossing_changes
    union
    select customer_id from new_versions
    union
    select customer_id from new_lifetimes

),

final as (

    select
        customers.customer_id,
        {{ date_literal(end_date) }} as state_date,
        {%- for column, carried_column in [
            ('signup_date', 'signup_date'), ('plan', 'plan'), ('region', 'region'),
            ('acquisition_channel', 'acquisition_channel'),
            ('updated_at', 'attributes_updated_at'),
            ('partition_date', 'attributes_partition_date'),
            ('source_file', 'attributes_source_file'),
        ] %}
        case
            when {{ take_new }} then new_versions.{{ column }}
            else previous.{{ carried_column }}
        end as {{ carried_column }},
        {%- endfor %}
        {%- for column in lifetime_columns %}
        case
            when new_lifetimes.customer_id is not null then new_lifetimes.{{ column }}
            else previous.lifetime_{{ column }}
        end as lifetime_{{ column }},
        {%- endfor %}
        case
            when greatest(previous.last_purchase_date, arrival_changes.last_purchase_date)
                > {{ date_literal(window_start) }}
                then greatest(previous.last_purchase_date, arrival_changes.last_purchase_date)
        end as last_purchase_date,
        case
            when greatest(previous.last_contact_date, arrival_changes.last_contact_date)
                > {{ date_literal(window_start) }}
                then greatest(previous.last_contact_date, arrival_changes.last_contact_date)
        end as last_contact_date,
        {{ _listed_or_null(merged_purchase_days) }} as purchase_days_listed,
        {%- for name, value, lo, hi in summed %}
        cast(
            coalesce(previous.{{ name }}, 0)
            + coalesce(arrival_changes.{{ name }}, 0)
            + coalesce(crossing_changes.{{ name }}, 0)
            as {{ feature_sum_type(value) }}
        ) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from customers
    left join previous
        on customers.customer_id = previous.customer_id
    left join arrival_changes
        on customers.customer_id = arrival_changes.customer_id
    left join crossing_changes
        on customers.customer_id = crossing_changes.customer_id
    left join new_versions
        on customers.customer_id = new_versions.customer_id
    left join new_lifetimes
        on customers.customer_id = new_lifetimes.customer_id

)

{% else %}

window_rows as (

    -- the rows of the look-back known by end_date; a purchase day counts towards
    -- purchase_days_90d on its first row to arrive
    select
        *,
        {{ dbt.datediff('activity_date', date_literal(end_date), 'day') }} as days_ago,
        {{ first_arrival_flag() }} as first_purchase_rows

    from {{ ref('int_customer_days_aggregated') }}
    where partition_date > {{ date_literal(window_start) }}
        and partition_date <= {{ date_literal(end_date) }}
        and activity_date > {{ date_literal(window_start) }}
        and activity_date <= {{ date_literal(end_date) }}

),

window_totals as (

    select
        customer_id,
        {{ window_state_aggregates('purchase_days_listed', list_start) }}

    from window_rows
    group by customer_id

),

versions as (

    select * from {{ ref('stg_landing__customers') }}
    where partition_date <= {{ date_literal(end_date) }}
        and cast(updated_at as date) <= {{ date_literal(end_date) }}
    qualify row_number() over (
        partition by customer_id
        order by updated_at desc, partition_date desc, source_file desc
    ) = 1

),

lifetimes as (

    select * from {{ ref('int_customer_lifetimes_accumulated') }}
    where known_on <= {{ date_literal(end_date) }}
    qualify row_number() over (partition by customer_id order by known_on desc) = 1

),

customers as (

    select customer_id from window_totals
    union
    select customer_id from versions
    union
    select customer_id from lifetimes

),

final as (

    select
        customers.customer_id,
        {{ date_literal(end_date) }} as state_date,
        versions.signup_date,
        versions.plan,
        versions.region,
        versions.acquisition_channel,
        versions.updated_at as attributes_updated_at,
        versions.partition_date as attributes_partition_date,
        versions.source_file as attributes_source_file,
        {%- for column in lifetime_columns %}
        lifetimes.{{ column }} as lifetime_{{ column }},
        {%- endfor %}
        window_totals.last_purchase_date,
        window_totals.last_contact_date,
        {{ _listed_or_null('list_sort(window_totals.purchase_days_listed)') }}
            as purchase_days_listed,
        {%- for name, value, lo, hi in summed %}
        cast(coalesce(window_totals.{{ name }}, 0) as {{ feature_sum_type(value) }})
            as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from customers
    left join versions
        on customers.customer_id = versions.customer_id
    left join lifetimes
        on customers.customer_id = lifetimes.customer_id
    left join window_totals
        on customers.customer_id = window_totals.customer_id

)

{% endif %}

select * from final
