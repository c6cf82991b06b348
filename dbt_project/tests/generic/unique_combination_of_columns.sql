{#
    No two rows share the same values of combination_of_columns (a composite key).
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with

key_counts as (

    select
        {{ combination_of_columns | join(',\n        ') }},
        count(*) as row_count

    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}

),

final as (

    select * from key_counts
    where row_count > 1

)

select * from final

{% endtest %}
