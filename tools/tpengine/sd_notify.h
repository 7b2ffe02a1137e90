#pragma once
// The systemd notification protocol written by hand (one datagram to $NOTIFY_SOCKET), so that
// tpengine needs no libsystemd: READY=1, RELOADING=1 (+ MONOTONIC_USEC), STOPPING=1.
// Every call is a no-op when NOTIFY_SOCKET is unset (not started by systemd).

#include <string>

namespace tp::tools {

// Sends `state` (e.g. "READY=1\nSTATUS=running"); false when NOTIFY_SOCKET is set but the
// datagram could not be sent.
bool sd_notify_state(const std::string& state);

void notify_ready(const std::string& status);
void notify_reloading();  // RELOADING=1 with MONOTONIC_USEC, as systemd 253+ expects
void notify_stopping();

}  // namespace tp::tools
