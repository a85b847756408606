# zerotrace-agent (.rpm) %preun: $1 is 0 when the package is removed, 1 on upgrade.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now zerotrace-agent.service >/dev/null 2>&1 || :
fi
