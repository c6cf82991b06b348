{#
    Every row satisfies a SQL boolean expression; placeholders such as
    __end_date__ are replaced as in a where config (macros/get_where_subquery.sql).
#}
{% test expression_is_true(model, expression) %}

with

final as (

    select *
    from {{ model }}
    where not ({{ render_run_placeholders(expression) }})

)

select * from final

{% endtest %}
