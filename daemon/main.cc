#include "daemon/daemon.h"

int main(int argc, char** argv) { return scribefs::DaemonMain(argc, argv); }
