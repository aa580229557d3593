// Linked into colo-cni in sanitizer builds only. A runtime starts a CNI plugin with an environment
// of its own (containerd, podman, colo-chain and the tests' `env -i` pass only CNI_*), so the
// *SAN_OPTIONS that sanitized.sh exports never reach it, and its reports would go to a stderr the
// caller may ignore (a test expecting the plugin to fail would pass over a report). These are the
// options it gets then: reports to files in the build directory, which sanitized.sh checks too.
// An *SAN_OPTIONS in the environment still wins (the runtimes read it after these).
// log_path is one option shared by all the runtimes in a process: the same file name for each.
#define COLO_REPORT "log_path=" COLO_SANITIZER_REPORTS "/colo-cni"

extern "C" {
const char* __asan_default_options() { return COLO_REPORT ":abort_on_error=1:detect_leaks=1"; }
const char* __ubsan_default_options() { return COLO_REPORT ":print_stacktrace=1:halt_on_error=1"; }
const char* __tsan_default_options() { return COLO_REPORT ":halt_on_error=1"; }
const char* __lsan_default_options() { return COLO_REPORT; }
}
