# bash completion for hacron(1), generated from its command line model: do not
# edit; make man rewrites it.

_hacron() {
    local cur prev words cword split
    _init_completion -s -n : || return

    # The command, and where a job's own command line starts.
    local i w cmd= job=
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        case $w in
        --)
            if [[ $cmd == run ]]; then job=$((i + 1)); break; fi ;;
        --config|--zk|--cluster|--node|--session-timeout|--socket|--socket-group|--zk-auth-file|--zk-tls-ca|--zk-tls-cert|--zk-tls-key|--log-level|--log-format|--history|--syslog-facility|--syslog-level|--name|--wait|--slot|--schedule|--timeout|--kill-grace|--skip-exit|--nice|--on-failure|--state-file|--pid-file|--metrics-listen|--crontab|--log-file|--hold|--drain|--job|--last|--rcron-conf) ((i++)) ;;
        -*) ;;
        *)
            if [[ -z $cmd ]]; then
                cmd=$w
            elif [[ $cmd == run ]]; then
                job=$i
                break
            fi ;;
        esac
    done
    if [[ -n $job ]]; then
        if ((cword == job)) && [[ $cur != */* ]]; then
            COMPREPLY=($(compgen -c -- "$cur"))
        else
            _filedir
        fi
        return
    fi

    case $prev in
    --config|--socket|--zk-auth-file|--zk-tls-ca|--zk-tls-cert|--zk-tls-key|--state-file|--pid-file|--crontab|--log-file|--rcron-conf)
        _filedir
        return ;;
    --zk|--cluster|--node|--session-timeout|--history|--syslog-facility|--syslog-level|--name|--wait|--slot|--schedule|--timeout|--kill-grace|--skip-exit|--nice|--on-failure|--metrics-listen|--hold|--drain|--job|--last)
        :
        return ;;
    --socket-group)
        COMPREPLY=($(compgen -g -- "$cur"))
        return ;;
    --log-level)
        COMPREPLY=($(compgen -W 'debug info warn error' -- "$cur"))
        return ;;
    --log-format)
        COMPREPLY=($(compgen -W 'text json' -- "$cur"))
        return ;;
    esac
    $split && return

    if [[ $cur == -* ]]; then
        local flags='-h --help --config --zk --cluster --node --session-timeout --socket --socket-group --direct --zk-auth-file --zk-world-read --zk-tls-ca --zk-tls-cert --zk-tls-key --log-level --log-format --history --syslog --syslog-facility --syslog-level --version'
        case $cmd in
        run) flags+=' --name --wait --slot --schedule --no-overlap --timeout --kill-grace --skip-exit --nice --on-failure' ;;
        agent) flags+=' --state-file --detach --pid-file --metrics-listen --crontab --log-file' ;;
        state) flags+=' -q --quiet --json' ;;
        resign) flags+=' --hold --drain' ;;
        status) flags+=' --json --job --last' ;;
        logs) flags+=' --slot' ;;
        check) flags+=' --crontab --rcron-conf --missed' ;;
        esac
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
        return
    fi
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W 'run agent state resign rejoin status logs check' -- "$cur"))
    elif [[ $cmd == run ]]; then
        COMPREPLY=($(compgen -c -- "$cur"))
    fi
} &&
    complete -F _hacron hacron
