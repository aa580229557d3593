// libFuzzer target: libcolo's channel fed by a hostile writer. The fuzzer plays side 0: it lays
// out a segment, may spoil its header, hands it over as a real peer would (SCM_RIGHTS on a socket
// pair), then runs a program of its input bytes: write any value anywhere in the shared memory
// (positions, record headers, payload), and have libcolo read, release, reserve and commit. Every
// call must end in OK, a timeout or "the peer went away", stay gone once gone, and hand out only
// memory inside libcolo's own mapping of the segment. ASan and UBSan check the rest.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "channel.h"
#include "colo/channel_layout.h"
#include "colo/colo.h"

namespace {

constexpr std::uint64_t kBytes = 64 << 10;

struct Input {
  const std::uint8_t* p;
  std::size_t n;
  template <class T>
  T take() {
    T v{};
    const std::size_t k = n < sizeof(T) ? n : sizeof(T);
    std::memcpy(&v, p, k);
    p += k;
    n -= k;
    return v;
  }
};

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool inside(const colo_channel* ch, const void* p, std::uint64_t len) {
  const auto* b = static_cast<const unsigned char*>(ch->base);
  const auto* q = static_cast<const unsigned char*>(p);
  return q >= b && q <= b + ch->size && len <= static_cast<std::uint64_t>(b + ch->size - q);
}

bool handOver(int sock, const int (&fds)[3]) {
  char tag[9] = {'C'};
  std::memcpy(tag + 1, &kBytes, 8);
  iovec iov{tag, sizeof(tag)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(fds))] = {};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(fds));
  std::memcpy(CMSG_DATA(c), fds, sizeof(fds));
  return ::sendmsg(sock, &m, 0) == static_cast<ssize_t>(sizeof(tag));
}

void store(unsigned char* base, std::uint64_t off, std::uint64_t value) {
  std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(base + (off % kBytes & ~std::uint64_t{7}))).store(value, std::memory_order_release);
}

void run(Input in) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) return;
  int bells[2] = {-1, -1};
  (void)::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, bells);
  const int fds[3] = {::memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING), bells[0], bells[1]};
  void* map = MAP_FAILED;
  if (fds[0] >= 0 && ::ftruncate(fds[0], kBytes) == 0 && ::fcntl(fds[0], F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0) {
    map = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
  }
  if (map != MAP_FAILED) {
    auto* base = static_cast<unsigned char*>(map);
    colo_channel_layout_init(base, kBytes);
    const colo_segment_header seg = *reinterpret_cast<colo_segment_header*>(base);
    // Up to three words of the segment header spoiled before the hand-over.
    for (int k = in.take<std::uint8_t>() % 4; k > 0; --k) {
      const auto off = in.take<std::uint8_t>() % 8 * 8;
      store(base, off, in.take<std::uint64_t>());
    }
    colo_channel* ch = nullptr;
    if (handOver(pair[0], fds) && colo_channel_accept(pair[1], 100, &ch) == COLO_OK) {
      // The fuzzer writes through the layout it made, whatever the header says now.
      auto* ring0 = base + seg.ring_offset[0];
      auto* ring1 = base + seg.ring_offset[1];
      const std::uint64_t data0 = seg.ring_offset[0] + sizeof(colo_ring_header);
      bool gone = false;
      while (in.n > 0) {
        const auto op = in.take<std::uint8_t>();
        const bool call = op % 8 >= 4;  // a libcolo call, not a write by the peer
        int rc = COLO_OK;
        switch (op % 8) {
          case 0: store(base, in.take<std::uint16_t>() * std::uint64_t{8}, in.take<std::uint64_t>()); break;
          case 1: {  // head of what it sends, and whether it marks empty slots
            const auto v = in.take<std::uint16_t>();
            store(ring0, 0, (v & 0x7fff) * std::uint64_t{8});
            store(ring0, 16, v >> 15);
            break;
          }
          case 2: store(ring1, 64, in.take<std::uint16_t>() * std::uint64_t{8}); break;        // tail of what it reads
          case 3: {                                                                              // a record header
            const std::uint64_t off = in.take<std::uint16_t>() * std::uint64_t{8} % seg.ring_capacity;
            const auto length = in.take<std::uint32_t>();
            store(base, data0 + off, length | std::uint64_t{in.take<std::uint8_t>()} << 32);
            break;
          }
          case 4:
          case 5: {
            const void* buf = nullptr;
            unsigned long len = 0;
            rc = colo_channel_read(ch, 0, &buf, &len);
            if (rc == COLO_OK) {
              check(inside(ch, buf, len));
              volatile unsigned char sum = 0;
              for (unsigned long i = 0; i < len; ++i) sum = sum + static_cast<const unsigned char*>(buf)[i];
              if (op % 8 == 5) rc = colo_channel_release(ch);
            }
            break;
          }
          case 6: rc = colo_channel_release(ch); break;
          default: {
            void* buf = nullptr;
            const unsigned long len = in.take<std::uint16_t>();
            rc = colo_channel_reserve(ch, len, 0, &buf);
            if (rc == COLO_OK) {
              check(inside(ch, buf, len));
              std::memset(buf, 0xa5, len);
              rc = colo_channel_commit(ch, len);
            }
          }
        }
        check(rc == COLO_OK || rc == COLO_E_TIMEOUT || rc == COLO_E_UNAVAILABLE || rc == COLO_E_INVALID);
        check(!gone || !call || rc == COLO_E_UNAVAILABLE);  // once gone, gone for good
        if (rc == COLO_E_UNAVAILABLE) gone = true;
      }
      colo_channel_close(ch);
    }
    ::munmap(map, kBytes);
  }
  for (int fd : {pair[0], pair[1], fds[0], fds[1], fds[2]}) ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  run(Input{data, size});
  return 0;
}
