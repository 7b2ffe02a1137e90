#pragma once
// Preflight of the IPv4 sysctls that make TPROXY fail without a word (issue 9):
// src_valid_mark=1 makes the reverse-path check look the client's address up with the
// intercept mark, finds it "local" in tpengine's route table and drops the packet, so it is
// refused; strict rp_filter drops intercepted packets that arrive asymmetrically: a warning.
// Run by --check (preflight()) and at start, before anything is applied.

#include <string>

#include "config/load.h"
#include "config/preflight.h"

namespace tp::config {

// `proc_sys` is /proc/sys, or a stand-in tree for tests.
void check_tproxy_sysctls(const LoadedConfig& config, PreflightReport& report,
                          const std::string& proc_sys = "/proc/sys");

// The UDP sockets of listeners that serve UDP: can each be bound (a port held by another UDP
// socket, a privileged port)? TCP and UDP ports are separate; check_listeners probes TCP.
void check_udp_listeners(const plan::Plan& plan, PreflightReport& report);

}  // namespace tp::config
