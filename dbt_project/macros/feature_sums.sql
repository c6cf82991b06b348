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


{% macro activity_summary_columns(totals, as_of) -%}
    {#-
        The activity columns of customer_features from a customer's summed
        features (``totals``: a relation with feature_sums' columns and
        last_purchase_date, last_contact_date) on the date ``as_of``: one
        spelling for the bulk and the nightly path.
    -#}
    {%- set lookback_days = feature_lookback_days() -%}
    {{ dbt.datediff(totals ~ '.last_purchase_date', as_of, 'day') }} as recency_days,
    {%- for window in feature_windows() %}
    {{ totals }}.tx_count_{{ window }}d,
    {{ totals }}.spend_{{ window }}d,
    {%- endfor %}
    {{ totals }}.tx_count_prior_30d,
    {{ totals }}.spend_prior_30d,
    {{ totals }}.purchase_days_90d,
    {{ totals }}.discounted_tx_count_90d,
    (
        {%- for category in var('categories') %}
        case when {{ totals }}.{{ category }}_rows_90d > 0 then 1 else 0 end
        {{- ' +' if not loop.last }}
        {%- endfor %}
    ) as category_count_90d,
    {{ totals }}.tickets_30d,
    {{ totals }}.tickets_90d,
    {{ totals }}.complaint_tickets_90d,
    {{ totals }}.high_severity_tickets_90d,
    {{ totals }}.contacts_90d,
    case
        when {{ totals }}.last_contact_date > {{ add_days(as_of, -lookback_days) }}
            then {{ dbt.datediff(totals ~ '.last_contact_date', as_of, 'day') }}
    end as days_since_last_contact
{%- endmacro %}


{% macro first_arrival_flag(days='') -%}
    {#-
        1 on the first row to arrive (lowest partition_date) of a customer's
        purchase day, else 0: a purchase day counts once towards
        purchase_days_90d. ``days`` qualifies the columns (a relation alias).
    -#}
    {%- set p = days ~ '.' if days else '' -%}
    case
        when {{ p }}purchases > 0
            and row_number() over (
                partition by {{ p }}customer_id, {{ p }}activity_date, {{ p }}purchases > 0
                order by {{ p }}partition_date
            ) = 1
            then 1
        else 0
    end
{%- endmacro %}
