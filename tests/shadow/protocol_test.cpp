// The control protocol's exact bytes, and the control socket server (no QEMU).
#include "harness/shadow/protocol.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "harness/shadow/server.h"
#include "tests/shadow/socket_client.h"

namespace framecert::shadow {
namespace {

using testing::connect_to;
using testing::read_until;
using testing::round_trip;
using testing::ScratchDir;
using testing::send_text;

constexpr char kEmptyStats[] =
    "framecert-shadow 1\n"
    "s calls 0\n"
    "s rets 0\n"
    "s unmatched 0\n"
    "s dropped 0\n"
    "s resynced 0\n"
    "s stale 0\n"
    "end\n";

void fill(ShadowStacks& s) {
  s.on_call(0xffffc90000013ff8, 0xffffffff81000105);
  s.on_call(0xffffc90000013fb8, 0xffffffff810a0000);
  s.on_call(0xffffc90000013f00, 0xffffffff81000000);
  s.on_ret(0xffffc90000013f00);
  s.on_ret(0xffffc9000002fff8);  // nothing there
  s.on_call(0x0000000000007ff8, 0x0);
}

TEST(Protocol, Snapshot) {
  ShadowStacks s;
  fill(s);
  EXPECT_EQ(respond(s, "snapshot", 17),
            "framecert-shadow 1\n"
            "e 0x7ff8 0x0\n"
            "e 0xffffc90000013fb8 0xffffffff810a0000\n"
            "e 0xffffc90000013ff8 0xffffffff81000105\n"
            "s calls 4\n"
            "s rets 2\n"
            "s unmatched 1\n"
            "s dropped 0\n"
            "s resynced 0\n"
            "s stale 17\n"
            "end\n");
}

TEST(Protocol, Stats) {
  ShadowStacks s;
  EXPECT_EQ(respond(s, "stats"), kEmptyStats);
  EXPECT_EQ(respond(s, "snapshot"), kEmptyStats);
  fill(s);
  EXPECT_EQ(respond(s, "stats"),
            "framecert-shadow 1\n"
            "s calls 4\n"
            "s rets 2\n"
            "s unmatched 1\n"
            "s dropped 0\n"
            "s resynced 0\n"
            "s stale 0\n"
            "end\n");
}

TEST(Protocol, BlanksAroundTheCommandAreIgnoredAnythingElseIsAnError) {
  ShadowStacks s;
  EXPECT_EQ(respond(s, "stats\r"), kEmptyStats);
  EXPECT_EQ(respond(s, "  snapshot "), kEmptyStats);
  for (const char* bad : {"", "snap", "Snapshot", "stats now", "snapshot\n"}) {
    EXPECT_EQ(respond(s, bad), "error unknown command\n") << bad;
  }
}

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }
  std::unique_ptr<ControlServer> start(const std::string& path, std::string* error) {
    return ControlServer::start(
        path, [this](std::string_view r) { return respond(stacks_, r); }, error);
  }
  ScratchDir dir_;
  ShadowStacks stacks_;
};

TEST_F(ControlServerTest, ServesManyCommandsPerConnectionAndRemovesTheSocketOnStop) {
  const std::string path = dir_.file("sock");
  std::string error;
  auto server = start(path, &error);
  ASSERT_TRUE(server) << error;
  fill(stacks_);
  const auto reply = round_trip(path, "stats\nbogus\nsnapshot\n");
  ASSERT_TRUE(reply);
  EXPECT_EQ(*reply, respond(stacks_, "stats") + "error unknown command\n" + respond(stacks_, "snapshot"));
  server->stop();
  EXPECT_FALSE(std::filesystem::exists(path));
  server->stop();  // idempotent
}

TEST_F(ControlServerTest, RequestsSplitAcrossWritesAndConcurrentConnections) {
  const std::string path = dir_.file("sock");
  std::string error;
  auto server = start(path, &error);
  ASSERT_TRUE(server) << error;
  const int a = connect_to(path);
  const int b = connect_to(path);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_TRUE(send_text(a, "sta"));
  ASSERT_TRUE(send_text(b, "stats\n"));  // b is answered while a's line is incomplete
  EXPECT_EQ(read_until(b, "end\n"), kEmptyStats);
  ASSERT_TRUE(send_text(a, "ts\r\nsnapshot\n"));
  EXPECT_EQ(read_until(a, std::string("end\n") + kEmptyStats), std::string(kEmptyStats) + kEmptyStats);
  close(b);
  ASSERT_TRUE(send_text(a, "stats\n"));  // a survives b's hang-up
  EXPECT_EQ(read_until(a, "end\n"), kEmptyStats);
  close(a);
}

TEST_F(ControlServerTest, AnOverlongRequestLineIsRefusedAndTheConnectionClosed) {
  const std::string path = dir_.file("sock");
  std::string error;
  auto server = start(path, &error);
  ASSERT_TRUE(server) << error;
  const auto reply = round_trip(path, std::string(10000, 'x'));
  ASSERT_TRUE(reply);
  EXPECT_EQ(*reply, "error request too long\n");
  EXPECT_EQ(round_trip(path, "stats\n"), kEmptyStats);  // the server itself goes on
}

TEST_F(ControlServerTest, StopWithAClientThatNeverReads) {
  const std::string path = dir_.file("sock");
  std::string error;
  auto server = start(path, &error);
  ASSERT_TRUE(server) << error;
  for (unsigned i = 0; i < 20000; ++i) stacks_.on_call(0xffffc90000000000 + i * 0x4000 + 0x3ff8, i);
  const int fd = connect_to(path);
  ASSERT_GE(fd, 0);
  std::string many;
  for (unsigned i = 0; i < 200; ++i) many += "snapshot\n";  // replies far beyond the socket buffers
  ASSERT_TRUE(send_text(fd, many));
  usleep(100 * 1000);  // the server is now stuck waiting for room to send
  const auto before = std::chrono::steady_clock::now();
  server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::milliseconds(500));
  EXPECT_FALSE(std::filesystem::exists(path));
  close(fd);
}

TEST_F(ControlServerTest, AClientThatStopsReadingIsDroppedAndOthersAreServed) {
  const std::string path = dir_.file("sock");
  std::string error;
  auto server = start(path, &error);
  ASSERT_TRUE(server) << error;
  for (unsigned i = 0; i < 20000; ++i) stacks_.on_call(0xffffc90000000000 + i * 0x4000 + 0x3ff8, i);
  const int stuck = connect_to(path);
  ASSERT_GE(stuck, 0);
  ASSERT_TRUE(send_text(stuck, "snapshot\nsnapshot\n"));  // ~1.7 MB of replies, never read
  const auto before = std::chrono::steady_clock::now();
  const auto reply = round_trip(path, "stats\n");  // waits for the server to give up on `stuck` (2 s)
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(5));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->rfind("framecert-shadow 1\ns calls 20000\n", 0), 0u) << *reply;
  close(stuck);
}

TEST_F(ControlServerTest, ReplacesAStaleSocketButNotALiveOne) {
  const std::string path = dir_.file("sock");
  std::string error;
  auto first = start(path, &error);
  ASSERT_TRUE(first) << error;
  EXPECT_FALSE(start(path, &error));
  EXPECT_NE(error.find("in use"), std::string::npos) << error;
  EXPECT_EQ(round_trip(path, "stats\n"), kEmptyStats);  // the first server was left alone

  // A socket file nobody listens on (its QEMU was killed): taken over.
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string stale = dir_.file("stale");
  std::strncpy(addr.sun_path, stale.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  close(fd);
  auto second = start(stale, &error);
  ASSERT_TRUE(second) << error;
  EXPECT_EQ(round_trip(stale, "stats\n"), kEmptyStats);
}

TEST_F(ControlServerTest, RefusesBadPaths) {
  std::string error;
  const std::string regular = dir_.file("regular");
  std::ofstream(regular) << "x";
  EXPECT_FALSE(start(regular, &error));
  EXPECT_NE(error.find("not a socket"), std::string::npos) << error;
  EXPECT_TRUE(std::filesystem::exists(regular));  // never removed

  EXPECT_FALSE(start(dir_.file(std::string(200, 'x')), &error));
  EXPECT_NE(error.find("shorter than"), std::string::npos) << error;
  EXPECT_FALSE(start("", &error));
  EXPECT_FALSE(start(dir_.file("no/such/dir/sock"), &error));
  EXPECT_NE(error.find("cannot bind"), std::string::npos) << error;
}

}  // namespace
}  // namespace framecert::shadow
