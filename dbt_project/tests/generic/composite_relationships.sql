{#
    Every combination of columns in the model exists in the parent model `to`
    (a relationships test on a composite key, e.g. (customer_id, as_of_date)).
    to_where limits the parent's rows, with the placeholders of a where config.
#}
{% test composite_relationships(model, columns, to, to_where=none) %}

with

child as (

    select distinct
        {{ columns | join(',\n        ') }}

    from {{ model }}

),

parent as (

    select distinct
        {{ columns | join(',\n        ') }}

    from {{ to }}
    {%- if to_where %}
    where {{ render_run_placeholders(to_where) }}
    {%- endif %}

),

final as (

    select child.*
    from child
    left join parent
        on {% for column in columns -%}
            child.{{ column }} = parent.{{ column }}
            {%- if not loop.last %}
        and {% endif -%}
        {%- endfor %}
    where parent.{{ columns[0] }} is null

)

select * from final

{% endtest %}
