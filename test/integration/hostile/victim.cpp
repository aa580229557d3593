// libcolo as side 1: accept the channel offered on $COLO_PAIR_FD, then N times read and send.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "colo/colo.h"

int main() {
  const int fd = std::atoi(std::getenv("COLO_PAIR_FD"));
  colo_channel* ch = nullptr;
  if (int rc = colo_channel_accept(fd, 5000, &ch); rc != COLO_OK) {
    std::printf("cpp accept err %d: %s\ncpp alive\n", rc, colo_last_error());
    return 0;
  }
  const int n = std::getenv("N") ? std::atoi(std::getenv("N")) : 3;
  for (int i = 0; i < n; ++i) {
    const void* in = nullptr;
    unsigned long len = 0;
    int rc = colo_channel_read(ch, 2000, &in, &len);
    if (rc == COLO_OK) {
      std::printf("cpp read ok %lu\n", len);
      colo_channel_release(ch);
    } else {
      std::printf("cpp read err %d: %s\n", rc, colo_last_error());
    }
    void* out = nullptr;
    rc = colo_channel_reserve(ch, 64, 2000, &out);
    if (rc == COLO_OK) {
      std::memset(out, 'z', 64);
      rc = colo_channel_commit(ch, 64);
    }
    if (rc == COLO_OK) std::printf("cpp send ok\n");
    else std::printf("cpp send err %d: %s\n", rc, colo_last_error());
    std::fflush(stdout);
  }
  std::printf("cpp alive\n");
  colo_channel_close(ch);
}
