{#
    Incremental strategy "replace_range": delete the rows of the run's date range,
    then insert the model's rows, in one transaction. The range is the model's
    incremental_predicates, written with the run's date placeholders
    (__start_date__ ...: see render_run_placeholders) and resolved here, at run
    time, so a rerun of a night replaces exactly that night, and rows that no longer
    qualify disappear too (which delete+insert on a unique key would keep).
#}
{% macro get_incremental_replace_range_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set predicates = arg_dict['incremental_predicates'] -%}
    {%- if not predicates -%}
        {{ exceptions.raise_compiler_error(
            "replace_range needs incremental_predicates naming the replaced range ("
            ~ target ~ ")"
        ) }}
    {%- endif -%}
    {%- set dest_cols_csv = get_quoted_csv(
        arg_dict['dest_columns'] | map(attribute='name')
    ) -%}

    delete from {{ target }}
    where {{ render_run_placeholders(predicates | join(' and ')) }};

    insert into {{ target }} ({{ dest_cols_csv }})
    select {{ dest_cols_csv }}
    from {{ source }}

{%- endmacro %}
