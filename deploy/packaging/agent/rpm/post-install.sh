# zerotrace-agent (.rpm) %post: $1 is 1 on install, 2 on upgrade. As the .deb's postinst: the
# unit is enabled, started only once /etc/zerotrace-agent/agent.env names a server and an
# enroll secret (or an enrollment left its identity), restarted on upgrade when configured.
settings=/etc/zerotrace-agent/agent.env
state=/var/lib/zerotrace-agent
setting() {
    [ -r "$settings" ] || return 0
    sed -n "s/^[[:space:]]*$1=//p" "$settings" | tail -n 1 |
        sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'$/\1/"
}
configured() {
    [ -n "$(setting ZEROTRACE_SERVER)" ] || return 1
    [ -n "$(setting ZEROTRACE_ENROLL_SECRET)" ] || [ -s "$state/identity.json" ]
}
mkdir -p "$state"
chmod 0700 "$state"
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl enable zerotrace-agent.service >/dev/null 2>&1 || :
    fi
fi
if configured; then
    echo "zerotrace-agent: configured in $settings: (re)starting it"
    if [ -d /run/systemd/system ]; then
        if [ "$1" -eq 1 ]; then
            systemctl start zerotrace-agent.service >/dev/null 2>&1 || :
        else
            systemctl try-restart zerotrace-agent.service >/dev/null 2>&1 || :
        fi
    fi
else
    echo "zerotrace-agent: not started: set ZEROTRACE_SERVER and ZEROTRACE_ENROLL_SECRET in" \
        "$settings, then run: systemctl restart zerotrace-agent"
fi
