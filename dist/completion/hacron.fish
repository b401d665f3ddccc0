# fish completion for hacron(1), generated from its command line model: do not
# edit; make man rewrites it.

# __hacron_scan prints the command given so far (- for none yet), then
# "job" once a job's own command line has begun.
function __hacron_scan
    set -l tokens (commandline -opc)
    set -l cmd
    set -l skip 0
    for t in $tokens[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        switch $t
            case '--'
                if contains -- "$cmd" run
                    echo $cmd
                    echo job
                    return
                end
            case --config --zk --cluster --node --session-timeout --socket --socket-group --zk-auth-file --zk-tls-ca --zk-tls-cert --zk-tls-key --log-level --log-format --history --syslog-facility --syslog-level --name --wait --slot --schedule --timeout --kill-grace --skip-exit --nice --on-failure --state-file --pid-file --metrics-listen --crontab --log-file --hold --drain --job --last --rcron-conf
                set skip 1
            case '-*'
            case '*'
                if test -z "$cmd"
                    set cmd $t
                else if contains -- "$cmd" run
                    echo $cmd
                    echo job
                    return
                end
        end
    end
    if test -z "$cmd"
        echo -
    else
        echo $cmd
    end
end

# __hacron_is CMD: the command is CMD (- for none yet) and no job's command
# line has begun.
function __hacron_is
    set -l s (__hacron_scan)
    test (count $s) = 1; and test "$s[1]" = "$argv[1]"
end

function __hacron_job
    set -l s (__hacron_scan)
    test (count $s) = 2
end

# The job's own command line completes as that command's.
function __hacron_complete_job
    set -l tokens (commandline -opc) (commandline -ct)
    set -l i (contains -i -- -- $tokens)
    if test -n "$i"
        set tokens $tokens[(math $i + 1)..-1]
    else
        # The first word after the command that is no flag or flag value.
        set -l skip 0
        set -l seen 0
        for j in (seq 2 (count $tokens))
            if test $skip = 1
                set skip 0
                continue
            end
            switch $tokens[$j]
                case --config --zk --cluster --node --session-timeout --socket --socket-group --zk-auth-file --zk-tls-ca --zk-tls-cert --zk-tls-key --log-level --log-format --history --syslog-facility --syslog-level --name --wait --slot --schedule --timeout --kill-grace --skip-exit --nice --on-failure --state-file --pid-file --metrics-listen --crontab --log-file --hold --drain --job --last --rcron-conf
                    set skip 1
                case '-*'
                case '*'
                    if test $seen = 1
                        set tokens $tokens[$j..-1]
                        break
                    end
                    set seen 1
            end
        end
    end
    if test (count $tokens) -le 1
        __fish_complete_command
    else
        complete -C (string join ' ' -- (string escape -- $tokens))
    end
end

complete -c hacron -f
complete -c hacron -n '__hacron_job' -x -a '(__hacron_complete_job)'
complete -c hacron -n '__hacron_is -' -a run -d 'Run a job if this node is active; skip it silently otherwise'
complete -c hacron -n '__hacron_is -' -a agent -d 'Join the election and serve the local socket'
complete -c hacron -n '__hacron_is -' -a state -d 'Print active or passive (exit 0 active, 1 passive, 2 unknown)'
complete -c hacron -n '__hacron_is -' -a resign -d 'Ask the local agent to step down and stay out of the election for a while'
complete -c hacron -n '__hacron_is -' -a rejoin -d 'End a resign\'s hold early: the local agent joins the election again'
complete -c hacron -n '__hacron_is -' -a status -d 'Show the cluster: members, the active node, the fencing token, recent runs, missed slots'
complete -c hacron -n '__hacron_is -' -a logs -d 'Print the output a job\'s newest run left in its record (or the run of --slot)'
complete -c hacron -n '__hacron_is -' -a check -d 'Check this node\'s setup: config, ZooKeeper, the lease arithmetic, the cluster'
complete -c hacron -n 'not __hacron_job' -s h -l help -d 'Show context-sensitive help'
complete -c hacron -n 'not __hacron_job' -l config -r -F -d 'Config file (default: /etc/hacron/hacron.conf; a missing default file is fine)'
complete -c hacron -n 'not __hacron_job' -l zk -x -d 'ZooKeeper servers, h1:2181,h2:2181[/chroot] (default: 127.0.0.1:2181)'
complete -c hacron -n 'not __hacron_job' -l cluster -x -d 'Cluster name (default: default)'
complete -c hacron -n 'not __hacron_job' -l node -x -d 'This node\'s id (default: the host name)'
complete -c hacron -n 'not __hacron_job' -l session-timeout -x -d 'ZooKeeper session timeout to ask for (default: 10s)'
complete -c hacron -n 'not __hacron_job' -l socket -r -F -d 'Agent socket (default: /run/hacron/<cluster>.sock)'
complete -c hacron -n 'not __hacron_job' -l socket-group -x -a '(__fish_complete_groups)' -d 'Group allowed to use the agent socket (mode 0660; default: the agent\'s own group)'
complete -c hacron -n 'not __hacron_job' -l direct -d 'Direct mode: no agent, a ZooKeeper session per run (default: agent mode)'
complete -c hacron -n 'not __hacron_job' -l zk-auth-file -r -F -d 'Digest credentials user:password (mode 0600; default: none)'
complete -c hacron -n 'not __hacron_job' -l zk-world-read -d 'With --zk-auth-file: let anyone read hacron\'s nodes (monitoring)'
complete -c hacron -n 'not __hacron_job' -l zk-tls-ca -r -F -d 'CA certificate for ZooKeeper TLS (default: plain TCP)'
complete -c hacron -n 'not __hacron_job' -l zk-tls-cert -r -F -d 'Client certificate for ZooKeeper TLS'
complete -c hacron -n 'not __hacron_job' -l zk-tls-key -r -F -d 'Client key for ZooKeeper TLS'
complete -c hacron -n 'not __hacron_job' -l log-level -x -a 'debug info warn error' -d 'debug, info, warn or error (default: info; warn for run)'
complete -c hacron -n 'not __hacron_job' -l log-format -x -a 'text json' -d 'text or json (default: text)'
complete -c hacron -n 'not __hacron_job' -l history -x -d 'Run records kept per job (default: 20)'
complete -c hacron -n 'not __hacron_job' -l syslog -d 'Log to syslog instead of stderr'
complete -c hacron -n 'not __hacron_job' -l syslog-facility -x -d 'Syslog facility, rcron\'s syslog_facility (default: LOG_CRON)'
complete -c hacron -n 'not __hacron_job' -l syslog-level -x -d 'Lowest syslog priority logged, rcron\'s syslog_level (default: LOG_INFO)'
complete -c hacron -n 'not __hacron_job' -l version -d 'Print the version and exit'
complete -c hacron -n '__hacron_is run' -a '(__fish_complete_command)'
complete -c hacron -n '__hacron_is run' -l name -x -d 'Job identity (default: <command>-<first 8 hex of sha256 of argv>)'
complete -c hacron -n '__hacron_is run' -l wait -x -d 'If not active, wait up to D to become active (failover); ends early when another node takes the slot'
complete -c hacron -n '__hacron_is run' -l slot -x -d 'Explicit slot key (default: the invocation minute, UTC)'
complete -c hacron -n '__hacron_is run' -l schedule -x -d 'The job\'s cron expression: the slot is its latest time not after now'
complete -c hacron -n '__hacron_is run' -l no-overlap -d 'Skip if this job is still running anywhere in the cluster'
complete -c hacron -n '__hacron_is run' -l timeout -x -d 'Terminate the job after D (exit 124)'
complete -c hacron -n '__hacron_is run' -l kill-grace -x -d 'SIGTERM-to-SIGKILL grace (default 5s, lowered to what the lease allows)'
complete -c hacron -n '__hacron_is run' -l skip-exit -x -d 'Exit code of a skipped run'
complete -c hacron -n '__hacron_is run' -l nice -x -d 'Run the job at this nice level (rcron\'s nice_level)'
complete -c hacron -n '__hacron_is run' -l on-failure -x -d 'When the run ends failed, killed, lost or timed out, run CMD (by /bin/sh -c) with the run\'s HACRON_* variables, HACRON_RESULT and HACRON_EXIT_CODE'
complete -c hacron -n '__hacron_is agent' -l state-file -r -F -d 'Write active or passive here on every change (rcron\'s state file; hacron never reads it)'
complete -c hacron -n '__hacron_is agent' -l detach -d 'Run in the background; exit 0 at once if an agent of this cluster already runs here'
complete -c hacron -n '__hacron_is agent' -l pid-file -r -F -d 'Pid file, locked while the agent runs (default: the socket path with .pid)'
complete -c hacron -n '__hacron_is agent' -l metrics-listen -x -d 'Serve Prometheus metrics on ADDR (host:port) at /metrics'
complete -c hacron -n '__hacron_is agent' -l crontab -r -F -d 'Fire this crontab\'s jobs while active: a file, or a directory of files as /etc/cron.d has them, without the user field (docs in hacron(1))'
complete -c hacron -n '__hacron_is agent' -l log-file -r -F -d 'Log to this file (appended)'
complete -c hacron -n '__hacron_is state' -s q -l quiet -d 'Print nothing; the exit code tells'
complete -c hacron -n '__hacron_is state' -l json -d 'Print the state as JSON'
complete -c hacron -n '__hacron_is resign' -l hold -x -d 'Stay out of the election this long; 0 rejoins at once (default: 30s)'
complete -c hacron -n '__hacron_is resign' -l drain -x -d 'First stop admitting and let running jobs end by themselves for up to D; what still runs then is terminated'
complete -c hacron -n '__hacron_is status' -l json -d 'Print the status as JSON'
complete -c hacron -n '__hacron_is status' -l job -x -d 'Only this job: a name as hacron run --name takes it (a non-root user\'s own job), or USER:JOB'
complete -c hacron -n '__hacron_is status' -l last -x -d 'At most N runs per job, newest first; 0: every run kept (default: 0)'
complete -c hacron -n '__hacron_is logs' -l slot -x -d 'The run of this slot (default: the newest run that left output)'
complete -c hacron -n '__hacron_is check' -l crontab -r -F -d 'Check this crontab of hacron agent --crontab, line by line (default: the crontab config key)'
complete -c hacron -n '__hacron_is check' -l rcron-conf -r -F -d 'rcron\'s config, checked against hacron\'s for the rcron drop-in; a missing default file is fine (default: /etc/rcron/rcron.conf)'
complete -c hacron -n '__hacron_is check' -l missed -d 'Check only that no job with a schedule left a slot of the last 24 h unrun: one line per job that did, exit 1'
