#!/usr/bin/env bash
# Kaldi-style option parsing for recipe scripts.  Source it after defining the option variables:
#
#     nj=4              # number of parallel jobs
#     use_gpu=false     # run on the GPU
#     . utils/parse_options.sh
#
# Then `script.sh --nj 8 --use-gpu true data/train` sets nj=8 and use_gpu=true and leaves "data/train" in "$@".
#   --name value, --name=value   set the existing variable `name` (dashes in the name become underscores);
#                                an undefined variable or a missing value is an error (exit 1)
#   --config FILE                source FILE (bash assignments) before the other options are applied
#   a variable whose default is true/false only takes true or false
#   --help, -h                   print $help_message and every option with its comment (the option lines are
#                                those between '# <options>' and '# </options>' in the script, or else its
#                                unindented `name=value  # comment` lines), then exit 0
# Parsing stops at the first argument that is not an option (or after `--`).  Pure bash, since it has to set
# the caller's variables; safe under `set -euo pipefail`.  Its own names all start with _po_ and are removed.

_po_script="${BASH_SOURCE[1]:-$0}"
_po_me="$(basename "${_po_script}")"

# _po_print_help: the caller's help_message, then one line per option found in the caller's source.
_po_print_help() {
    if [ -n "${help_message:-}" ]; then
        printf '%s\n' "${help_message}"
    fi
    [ -r "${_po_script}" ] || return 0
    local line name value comment quoted shown in_block=0 has_block=0 width=0 i
    local -a names=() values=() comments=()
    local open_re='^[[:space:]]*#[[:space:]]*<options>[[:space:]]*$'
    local close_re='^[[:space:]]*#[[:space:]]*</options>[[:space:]]*$'
    local assign_re='^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$'
    local quoted_re="^(\"[^\"]*\"|'[^']*')(.*)\$"
    while IFS= read -r line || [ -n "${line}" ]; do
        if [[ ${line} =~ ${open_re} ]]; then has_block=1; break; fi
    done < "${_po_script}"
    while IFS= read -r line || [ -n "${line}" ]; do
        if [[ ${line} =~ ${open_re} ]]; then in_block=1; continue; fi
        if [[ ${line} =~ ${close_re} ]]; then in_block=0; continue; fi
        if [ "${has_block}" -eq 1 ]; then
            [ "${in_block}" -eq 1 ] || continue
        elif [[ ${line} =~ ^[[:space:]] ]]; then
            continue  # not top level
        fi
        [[ ${line} =~ ${assign_re} ]] || continue
        name="${BASH_REMATCH[1]}"
        value="${BASH_REMATCH[2]}"
        [ "${name}" != help_message ] || continue
        # the comment starts at the first '#' that follows a blank (a '#' inside a word belongs to the value)
        # (a leading quoted string is kept whole: foo="a #b"  # comment)
        comment=""
        quoted=""
        if [[ ${value} =~ ${quoted_re} ]]; then
            quoted="${BASH_REMATCH[1]}"
            value="${BASH_REMATCH[2]}"
        fi
        if [[ ${value} =~ ^#[[:space:]]?(.*)$ ]] && [ -z "${quoted}" ]; then
            value=""
            comment="${BASH_REMATCH[1]}"
        elif [[ ${value} == *[[:space:]]#* ]]; then
            comment="${value#*[[:space:]]#}"
            value="${value%%[[:space:]]#*}"
            comment="${comment#[[:space:]]}"
        fi
        value="${quoted}${value}"
        value="${value%"${value##*[![:space:]]}"}"  # trailing blanks
        # outside a marked block, only commented assignments are options (the rest are the script's own)
        if [ "${has_block}" -eq 0 ] && [ -z "${comment}" ]; then continue; fi
        names+=("${name}")
        values+=("${value}")
        comments+=("${comment}")
        shown="--${name} <${value}>"
        [ "${#shown}" -le "${width}" ] || width=${#shown}
    done < "${_po_script}"
    [ "${#names[@]}" -gt 0 ] || return 0
    [ "${width}" -le 32 ] || width=32  # one long default must not push every comment off the screen
    echo "Options:"
    for ((i = 0; i < ${#names[@]}; i++)); do
        if [ -n "${comments[i]}" ]; then
            printf '  %-*s   # %s\n' "${width}" "--${names[i]} <${values[i]}>" "${comments[i]}"
        else
            printf '  %s\n' "--${names[i]} <${values[i]}>"
        fi
    done
}

# _po_die MESSAGE: one clear line on stderr, and the caller stops.
_po_die() {
    echo "${_po_me}: $*" >&2
    exit 1
}

# First pass: --help anywhere among the options wins; --config files are sourced before any option is set,
# so that the command line overrides them whatever the order.
_po_i=1
while [ "${_po_i}" -le $# ]; do
    _po_arg="${!_po_i}"
    case "${_po_arg}" in
        --help|-h)
            _po_print_help
            exit 0 ;;
        --) break ;;
        --config=*)
            _po_value="${_po_arg#--config=}"
            [ -f "${_po_value}" ] || _po_die "--config: no such file '${_po_value}'"
            # shellcheck disable=SC1090
            . "${_po_value}"
            _po_i=$((_po_i + 1)) ;;
        --*=*) _po_i=$((_po_i + 1)) ;;
        --?*)
            if [ "${_po_arg}" = --config ]; then
                _po_next=$((_po_i + 1))
                [ "${_po_next}" -le $# ] || _po_die "option --config needs a value"
                _po_value="${!_po_next}"
                [ -f "${_po_value}" ] || _po_die "--config: no such file '${_po_value}'"
                # shellcheck disable=SC1090
                . "${_po_value}"
            fi
            _po_i=$((_po_i + 2)) ;;
        *) break ;;
    esac
done

# Second pass: set the variables, consuming the options from "$@".
while [ $# -gt 0 ]; do
    case "$1" in
        --)
            shift
            break ;;
        --config=*|--config)
            # sourced in the first pass; a script with its own `config` variable also gets the name
            if [ "$1" = --config ]; then _po_value="$2"; shift 2; else _po_value="${1#--config=}"; shift; fi
            if [ -n "${config+set}" ]; then config="${_po_value}"; fi
            continue ;;
        --*=*)
            _po_opt="${1%%=*}"
            _po_value="${1#*=}"
            shift ;;
        --?*)
            _po_opt="$1"
            [ $# -ge 2 ] || _po_die "option ${_po_opt} needs a value"
            _po_value="$2"
            shift 2 ;;
        *) break ;;
    esac
    _po_name="${_po_opt#--}"
    _po_name="${_po_name//-/_}"
    if ! [[ ${_po_name} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
        _po_die "invalid option '${_po_opt}'"
    fi
    if [ -z "${!_po_name+set}" ] || [[ ${_po_name} == _po_* ]]; then
        _po_die "unknown option ${_po_opt} (${_po_script} defines no variable '${_po_name}'; see --help)"
    fi
    _po_old="${!_po_name}"
    if [ "${_po_old}" = true ] || [ "${_po_old}" = false ]; then
        if [ "${_po_value}" != true ] && [ "${_po_value}" != false ]; then
            _po_die "option ${_po_opt} takes true or false, not '${_po_value}'"
        fi
    fi
    printf -v "${_po_name}" '%s' "${_po_value}"
done

unset _po_script _po_me _po_i _po_arg _po_value _po_next _po_opt _po_name _po_old
unset -f _po_print_help _po_die
true
