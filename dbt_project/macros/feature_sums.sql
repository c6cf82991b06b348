{% macro feature_sums() -%}
    {#-
        The summed features of customer_features, as (name, value per customer day,
        first day_ago, end day_ago): a row of int_customer_days_aggregated adds its
        value to the feature at d while it is known on d and
        lo <= d - activity_date < hi. customer_features (bulk builds) and
        int_customer_states (the nightly running state) both read this list, so
        the two paths sum the same things.
    -#}
    {%- set summed = [] -%}
    {%- for window in feature_windows() -%}
        {%- do summed.append(('tx_count_' ~ window ~ 'd', 'purchases', 0, window)) -%}
        {%- do summed.append(('spend_' ~ window ~ 'd', 'spend', 0, window)) -%}
    {%- endfor -%}
    {%- do summed.append(('tx_count_prior_30d', 'purchases', 30, 60)) -%}
    {%- do summed.append(('spend_prior_30d', 'spend', 30, 60)) -%}
    {%- do summed.append(('discounted_tx_count_90d', 'discounted_purchases', 0, 90)) -%}
    {%- for category in var('categories') -%}
        {%- do summed.append((
            category ~ '_rows_90d',
            'case when ' ~ category ~ '_purchases > 0 then 1 else 0 end',
            0,
            90,
        )) -%}
    {%- endfor -%}
    {%- do summed.append(('tickets_30d', 'tickets', 0, 30)) -%}
    {%- do summed.append(('tickets_90d', 'tickets', 0, 90)) -%}
    {%- do summed.append(('complaint_tickets_90d', 'complaint_tickets', 0, 90)) -%}
    {%- do summed.append(('high_severity_tickets_90d', 'high_severity_tickets', 0, 90)) -%}
    {%- do summed.append(('contacts_90d', 'contacts', 0, 90)) -%}
    {%- do summed.append(('purchase_days_90d', 'first_purchase_rows', 0, 90)) -%}
    {{ return(summed) }}
{%- endmacro %}


{% macro feature_sum_offsets() -%}
    {#- the days_ago at which a known row enters or leaves some summed feature -#}
    {%- set offsets = [] -%}
    {%- for feature in feature_sums() -%}
        {%- for day in feature[2:] if day > 0 and day not in offsets -%}
            {%- do offsets.append(day) -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(offsets) }}
{%- endmacro %}


{% macro feature_sum_type(value) -%}
    {#- the exact type a summed feature is kept in: spend in cents, counts whole -#}
    {{- 'decimal(38, 2)' if value == 'spend' else 'bigint' -}}
{%- endmacro %}


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
