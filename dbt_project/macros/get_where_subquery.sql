{#
    Data tests on partitioned models check only the run's range, so a nightly build
    costs in proportion to the new day, not to the history. A test's `where` config
    names the range with placeholders, replaced here:

        __start_date__ / __end_date__              the run's start_date and end_date
        __label_start_date__ / __label_end_date__  both minus horizon_days
#}
{% macro render_run_placeholders(text) -%}
    {%- set horizon_days = var('horizon_days') | int -%}
    {%- set rendered = text
        | replace('__label_start_date__', date_literal(
            shift_date(run_start_date(), -horizon_days)))
        | replace('__label_end_date__', date_literal(
            shift_date(run_end_date(), -horizon_days)))
        | replace('__start_date__', date_literal(run_start_date()))
        | replace('__end_date__', date_literal(run_end_date())) -%}
    {{ return(rendered) }}
{%- endmacro %}


{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ render_run_placeholders(where) }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}
