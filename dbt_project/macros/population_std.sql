{% macro population_std(count, total, square_total) -%}
    {#-
        Population standard deviation from integer sums (n, sum x, sum x^2), 0 when
        n is 0. The subtraction is exact in integers, so the result does not depend
        on the order the sums were taken in (nightly and bulk builds agree).
    -#}
    coalesce(
        sqrt(
            greatest(
                cast({{ count }} * {{ square_total }} - {{ total }} * {{ total }} as double),
                0
            )
        ) / nullif({{ count }}, 0),
        0
    )
{%- endmacro %}
