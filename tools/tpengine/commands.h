#pragma once
// The tpengine program's two front ends. Each takes argv without the program's own name
// handled: argv[0] is "relay" for relay_main and the program name for config_main.

namespace tp::tools {

int relay_main(int argc, char** argv);   // relay_command.cc: tcprdr-compatible command line
int config_main(int argc, char** argv);  // config_command.cc: tpengine -c FILE ...
int ctl_main(int argc, char** argv);     // ctl.cc: tpengine ctl COMMAND (argv[0] is "ctl")

}  // namespace tp::tools
