//! Collectors that list installed software on a host (dpkg, rpm, apk, pip, npm, cargo, brew, macOS, Windows).
