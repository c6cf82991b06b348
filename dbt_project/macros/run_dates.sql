{#
    The run's dates. A build covers the as_of_dates start_date, start_date + every,
    ... <= end_date; the nightly run is start_date = end_date = the run date. Date
    bounds are rendered as literals so that DuckDB prunes row groups by zone maps.

    ml.data.dbt passes the dates as environment variables (LOOPLINE_DBT_START_DATE,
    LOOPLINE_DBT_END_DATE, LOOPLINE_DBT_EVERY, and LOOPLINE_DBT_ANCHOR for a chunk
    of a bulk build), not as --vars: dbt re-parses the
    whole project (about 4 s) whenever --vars change. The environment is read only
    at execution (see _run_setting), so a new night re-parses nothing. A var of
    the same name (from --vars, or a unit test's overrides) wins over the
    environment.
#}

{% macro _run_setting(name) -%}
    {#-
        The environment is read only when dbt executes, never while it parses: dbt
        re-parses every file that read an environment variable whose value
        changed, so reading the run's dates at parse time cost a re-parse of most
        models every night. Parsing renders placeholder dates instead; nothing
        that parsing keeps (configs, refs) depends on them, and the replaced range
        is resolved at run time (macros/replace_range.sql).
    -#}
    {%- set value = var(name, none) -%}
    {%- if value is none and execute -%}
        {%- set value = env_var('LOOPLINE_DBT_' ~ (name | upper), '') -%}
        {%- if value == '' -%}{%- set value = none -%}{%- endif -%}
    {%- endif -%}
    {{ return(value) }}
{%- endmacro %}


{% macro _run_var_date(name) -%}
    {%- set value = _run_setting(name) -%}
    {%- if value is none -%}
        {%- if execute -%}
            {{ exceptions.raise_compiler_error(
                "var '" ~ name ~ "' is required, e.g. dbt build --vars "
                ~ "'{start_date: 2024-01-01, end_date: 2024-01-01}'"
            ) }}
        {%- endif -%}
        {#- parsing without vars (dbt parse, dbt ls) renders a placeholder -#}
        {%- set value = '1970-01-01' -%}
    {%- endif -%}
    {{ return(modules.datetime.date.fromisoformat(value | string)) }}
{%- endmacro %}


{% macro run_start_date() -%}
    {%- set start = _run_var_date('start_date') -%}
    {%- set end = _run_var_date('end_date') -%}
    {%- if start > end -%}
        {{ exceptions.raise_compiler_error(
            "start_date " ~ start ~ " lies after end_date " ~ end
        ) }}
    {%- endif -%}
    {{ return(start) }}
{%- endmacro %}


{% macro run_end_date() -%}
    {{ return(_run_var_date('end_date')) }}
{%- endmacro %}


{% macro run_every() -%}
    {%- set every = _run_setting('every') -%}
    {%- set every = 1 if every is none else every | int -%}
    {%- if every < 1 -%}
        {{ exceptions.raise_compiler_error("every must be >= 1, got " ~ every) }}
    {%- endif -%}
    {{ return(every) }}
{%- endmacro %}


{% macro shift_date(day, days) -%}
    {{ return(day + modules.datetime.timedelta(days=days)) }}
{%- endmacro %}


{% macro date_literal(day) -%}
    cast('{{ day.isoformat() }}' as date)
{%- endmacro %}


{% macro add_days(date_expression, days) -%}
    cast({{ dbt.dateadd('day', days, date_expression) }} as date)
{%- endmacro %}


{% macro run_first_as_of_date() -%}
    {#-
        The first as_of_date of the run: start_date, unless the run is one chunk
        of a longer bulk build whose snapshot dates are anchor, anchor + every, ...
        (LOOPLINE_DBT_ANCHOR, see ml.data.dbt.rebuild): then the first of those on
        or after start_date. A chunk starts the day after the one before it ended,
        so its partition-keyed models build every day in between.
    -#}
    {%- set start = run_start_date() -%}
    {%- set every = run_every() -%}
    {%- set anchor = _run_setting('anchor') -%}
    {#- dates given as vars (a unit test's overrides) are a run of their own -#}
    {%- if anchor is none or var('start_date', none) is not none -%}
        {{ return(start) }}
    {%- endif -%}
    {%- set anchor = modules.datetime.date.fromisoformat(anchor | string) -%}
    {{ return(shift_date(start, (anchor - start).days % every)) }}
{%- endmacro %}


{% macro run_last_as_of_date() -%}
    {#- the last as_of_date of the run: the last of first, first + every, ... <= end -#}
    {%- set first = run_first_as_of_date() -%}
    {%- set every = run_every() -%}
    {{ return(shift_date(first, ((run_end_date() - first).days // every) * every)) }}
{%- endmacro %}


{% macro as_of_dates_spine() -%}
    {#- one row per as_of_date of the run: first, first + every, ... <= end -#}
    {%- set first = run_first_as_of_date() -%}
    {%- set end = run_end_date() -%}
    {%- set every = run_every() -%}
    {%- if first > end -%}
        {{ exceptions.raise_compiler_error(
            "no as_of_date between " ~ run_start_date() ~ " and " ~ end
            ~ " (every " ~ every ~ " days from " ~ first ~ ")"
        ) }}
    {%- endif -%}
    {%- set count = ((run_last_as_of_date() - first).days // every) + 1 -%}
    select cast(as_of_date as date) as as_of_date
    from (
        values
        {%- for i in range(count) %}
            ('{{ shift_date(first, i * every).isoformat() }}'){{ ',' if not loop.last }}
        {%- endfor %}
    ) as run_dates (as_of_date)
{%- endmacro %}


{% macro feature_windows() -%}
    {#- the required windows plus any extra ones from the business config -#}
    {%- set windows = [7, 30, 90, 180] -%}
    {%- for window in var('feature_windows', []) -%}
        {%- if (window | int) not in windows -%}
            {%- do windows.append(window | int) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(windows | sort) }}
{%- endmacro %}


{% macro feature_lookback_days() -%}
    {#-
        How far back any feature of as_of_date d looks: the active window, the
        longest count window, 90 days (category, discount, ticket and contact
        features) and 60 days (the 30-day trends). Nothing older is read.
    -#}
    {%- set windows = feature_windows() -%}
    {{ return([var('active_window_days') | int, windows | max, 90, 60] | max) }}
{%- endmacro %}


{% macro run_partitions(column='partition_date') -%}
    {#-
        The landing partitions a partition-keyed model (int_*, fct_transactions)
        builds: the run's range when it adds to an existing table, and every
        partition up to end_date when it is built from scratch (first build or
        full refresh), so the first as_of_date of a bulk build sees its history.
    -#}
    {%- if is_incremental() -%}
        {{ column }} between {{ date_literal(run_start_date()) }}
            and {{ date_literal(run_end_date()) }}
    {%- else -%}
        {{ column }} <= {{ date_literal(run_end_date()) }}
    {%- endif -%}
{%- endmacro %}
