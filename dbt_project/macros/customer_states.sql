{#
    Pieces of int_customer_states shared by its two paths (carried from the night
    before, and computed from the look-back) and by the models that read it.
#}

{% macro purchase_list_days() -%}
    {#-
        How many days of purchase days the running state lists: the active window
        (the rhythm features' gaps) and at least 90 (a purchase day counts once
        towards purchase_days_90d, on its first row to arrive).
    -#}
    {{ return([var('active_window_days') | int, 90] | max) }}
{%- endmacro %}


{% macro _listed_or_null(expression) -%}
    {#- a list of days, or null when it is empty (one spelling of "none") -#}
    case when len({{ expression }}) > 0 then {{ expression }} end
{%- endmacro %}


{% macro lifetime_state_columns() -%}
    {#- the columns of int_customer_lifetimes_accumulated a customer state carries
        (as lifetime_<column>) -#}
    {{ return([
        'first_purchase_date', 'last_purchase_date', 'purchase_days', 'purchases',
        'spend', 'spend_points', 'day_sum', 'day_square_sum', 'spend_day_sum',
        'gap_count', 'gap_sum', 'gap_square_sum',
    ]) }}
{%- endmacro %}


{% macro window_state_aggregates(list_name, since) -%}
    {#-
        Aggregates over rows of int_customer_days_aggregated that carry days_ago
        (days before the state date) and first_purchase_rows: the last purchase
        and contact day, the purchase days after ``since`` (a date) as the list
        ``list_name``, and each summed feature over the rows inside its window.
    -#}
    max(case when purchases > 0 then activity_date end) as last_purchase_date,
    max(case when contacts > 0 then activity_date end) as last_contact_date,
    list_distinct(
        list(activity_date) filter (
            where purchases > 0 and activity_date > {{ date_literal(since) }}
        )
    ) as {{ list_name }},
    {%- for name, value, lo, hi in feature_sums() %}
    sum(
        case when days_ago >= {{ lo }} and days_ago < {{ hi }} then {{ value }} else 0 end
    ) as {{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}
