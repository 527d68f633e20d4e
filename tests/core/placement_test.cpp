#include "cloudmgr/placement.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cloudmgr/units.h"

namespace cloudmgr {
namespace {

using Hosts = std::vector<PlacementCandidate>;
using Placed = std::vector<std::string>;

PlacementCandidate host(std::string id, std::uint32_t cpus, std::uint64_t memory) {
  return {.host_id = std::move(id), .cpus = cpus, .memory_bytes = memory};
}

// A host already holding `vms` VMs of `vcpus` vCPUs and `memory` bytes in all.
PlacementCandidate busy(std::string id, std::uint32_t cpus, std::uint64_t memory_bytes, std::uint32_t vms,
                        std::uint32_t vcpus, std::uint64_t memory) {
  PlacementCandidate h = host(std::move(id), cpus, memory_bytes);
  h.vms = vms;
  h.vcpus_allocated = vcpus;
  h.memory_allocated_bytes = memory;
  return h;
}

PlacementRequest request(std::uint32_t count, std::uint32_t vcpus, std::uint64_t memory,
                         PlacementPolicy policy = PlacementPolicy::kPack, Overcommit overcommit = {}) {
  return {.vcpus = vcpus, .memory_bytes = memory, .count = count, .policy = policy, .overcommit = overcommit};
}

Placed placed(const PlacementRequest& r, const Hosts& hosts) {
  auto out = place(r, hosts);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : Placed{};
}

void expect_invalid(const Status& s, const std::string& must_mention) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(must_mention), std::string::npos) << "message: " << s.message();
}

void expect_mentions(const Status& s, const std::string& text) {
  EXPECT_NE(s.message().find(text), std::string::npos) << "expected \"" << text << "\" in: " << s.message();
}

// ---------------------------------------------------------------------------------------------
// Policy names and overcommit validation

TEST(PlacementPolicy, NamesRoundTrip) {
  for (const PlacementPolicy p : {PlacementPolicy::kPack, PlacementPolicy::kSpread}) {
    auto parsed = parse_placement_policy(to_string(p));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, p);
  }
  EXPECT_EQ(to_string(PlacementPolicy::kPack), "pack");
  EXPECT_EQ(to_string(PlacementPolicy::kSpread), "spread");
}

TEST(PlacementPolicy, UnknownTextIsInvalidArgumentNamingIt) {
  expect_invalid(parse_placement_policy("Pack").status(), "'Pack'");
  expect_invalid(parse_placement_policy("").status(), "''");
  expect_invalid(parse_placement_policy("round-robin").status(), "'round-robin'");
}

TEST(Overcommit, AcceptsTheBounds) {
  EXPECT_TRUE(Overcommit{}.validate().ok());
  EXPECT_TRUE((Overcommit{.cpu = 0.1, .memory = 0.1}).validate().ok());
  EXPECT_TRUE((Overcommit{.cpu = 64, .memory = 8, .memory_reserved_bytes = 1ULL << 62}).validate().ok());
}

TEST(Overcommit, RejectsOutOfRangeAndNonFiniteRatiosNamingTheField) {
  constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  for (const double bad : {0.09, 64.01, 0.0, -1.0, kNan, kInf}) {
    expect_invalid((Overcommit{.cpu = bad}).validate(), "overcommit.cpu");
  }
  for (const double bad : {0.09, 8.01, 0.0, -2.0, kNan, -kInf}) {
    expect_invalid((Overcommit{.memory = bad}).validate(), "overcommit.memory");
  }
}

// ---------------------------------------------------------------------------------------------
// Capacity arithmetic

TEST(Capacity, VcpusAreFlooredCpusTimesTheRatio) {
  const PlacementCandidate h = host("a", 16, 64 * kGiB);
  EXPECT_EQ(vcpu_capacity(h, {.cpu = 4}), 64U);
  EXPECT_EQ(vcpu_capacity(h, {.cpu = 1}), 16U);
  EXPECT_EQ(vcpu_capacity(h, {.cpu = 0.1}), 1U);                    // floor(1.6)
  EXPECT_EQ(vcpu_capacity(host("b", 3, kGiB), {.cpu = 1.5}), 4U);   // floor(4.5)
  EXPECT_EQ(vcpu_capacity(host("c", 10, kGiB), {.cpu = 0.7}), 7U);  // not 6: 0.7 counts as written
  EXPECT_EQ(vcpu_capacity(host("d", 0, kGiB), {.cpu = 4}), 0U);
  const PlacementCandidate huge = host("e", std::numeric_limits<std::uint32_t>::max(), kGiB);
  EXPECT_EQ(vcpu_capacity(huge, {.cpu = 64}), std::numeric_limits<std::uint32_t>::max());  // saturates
}

TEST(Capacity, MemoryIsWhatTheReserveLeavesTimesTheRatio) {
  const PlacementCandidate h = host("a", 8, 16 * kGiB);
  EXPECT_EQ(memory_capacity(h, {}), 16 * kGiB);
  EXPECT_EQ(memory_capacity(h, {.memory_reserved_bytes = 2 * kGiB}), 14 * kGiB);
  EXPECT_EQ(memory_capacity(h, {.memory = 1.5, .memory_reserved_bytes = 2 * kGiB}), 21 * kGiB);
  EXPECT_EQ(memory_capacity(h, {.memory = 0.5}), 8 * kGiB);
  EXPECT_EQ(memory_capacity(host("b", 1, 1000), {.memory = 0.3}), 300U);
  EXPECT_EQ(memory_capacity(host("c", 1, 7), {.memory = 1.5}), 10U);  // floor(10.5)
  // A reserve equal to or larger than the memory leaves nothing (no wrap-around).
  EXPECT_EQ(memory_capacity(h, {.memory_reserved_bytes = 16 * kGiB}), 0U);
  EXPECT_EQ(memory_capacity(h, {.memory = 8, .memory_reserved_bytes = 16 * kGiB + 1}), 0U);
  EXPECT_EQ(memory_capacity(h, {.memory_reserved_bytes = 16 * kGiB - 1}), 1U);
  const PlacementCandidate huge = host("d", 1, std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(memory_capacity(huge, {.memory = 8}), std::numeric_limits<std::uint64_t>::max());  // saturates
  EXPECT_EQ(memory_capacity(huge, {}), std::numeric_limits<std::uint64_t>::max());
}

// ---------------------------------------------------------------------------------------------
// Pack

TEST(PlacePack, FillsTheBusiestFittingHostAndLeavesIdleHostsIdle) {
  const Hosts hosts = {host("node-a", 16, 64 * kGiB), busy("node-b", 16, 64 * kGiB, 1, 2, 4 * kGiB),
                       host("node-c", 16, 64 * kGiB)};
  EXPECT_EQ(placed(request(3, 2, 4 * kGiB), hosts), (Placed{"node-b", "node-b", "node-b"}));
}

TEST(PlacePack, PrefersTheFullerOfTwoBusyHostsEvenIfAnIdleHostIsSmaller) {
  // node-a: half full after the VM; node-b: a quarter; node-s is idle and would be the
  // fullest after taking the VM (all of its memory), but pack keeps idle hosts idle.
  const Hosts hosts = {busy("node-a", 4, 16 * kGiB, 1, 6, 2 * kGiB), busy("node-b", 4, 16 * kGiB, 1, 2, 2 * kGiB),
                       host("node-s", 4, kGiB)};
  EXPECT_EQ(placed(request(1, 2, kGiB), hosts), (Placed{"node-a"}));
}

TEST(PlacePack, MovesToTheNextBusiestThenToTheFullestIdleHost) {
  // node-a has room for one more VM, node-b for two; then idle hosts: node-small is fuller
  // than node-big after taking a VM.
  const Hosts hosts = {busy("node-a", 2, 8 * kGiB, 1, 6, kGiB),  // 8 vCPUs (4x), 6 held
                       busy("node-b", 2, 8 * kGiB, 1, 4, kGiB),  // 8 vCPUs, 4 held
                       host("node-big", 4, 8 * kGiB),            // 16 vCPUs
                       host("node-small", 2, 8 * kGiB)};         // 8 vCPUs
  EXPECT_EQ(placed(request(5, 2, kGiB), hosts), (Placed{"node-a", "node-b", "node-b", "node-small", "node-small"}));
}

TEST(PlacePack, TheLargerShareDecidesBetweenCpuAndMemory) {
  // node-a: vCPUs a quarter used, memory 7/8 after the VM; node-b: vCPUs 3/4 after, memory
  // a quarter. Pack takes the higher of the two maxima: node-a (7/8).
  const Hosts hosts = {busy("node-a", 4, 8 * kGiB, 1, 2, 6 * kGiB), busy("node-b", 4, 8 * kGiB, 1, 10, 1 * kGiB)};
  EXPECT_EQ(placed(request(1, 2, kGiB), hosts), (Placed{"node-a"}));
  // Spread takes the lower maximum: node-b (3/4).
  EXPECT_EQ(placed(request(1, 2, kGiB, PlacementPolicy::kSpread), hosts), (Placed{"node-b"}));
}

// ---------------------------------------------------------------------------------------------
// Spread

TEST(PlaceSpread, AlternatesBetweenEqualHosts) {
  const Hosts hosts = {host("node-a", 8, 32 * kGiB), host("node-b", 8, 32 * kGiB)};
  EXPECT_EQ(placed(request(4, 2, 2 * kGiB, PlacementPolicy::kSpread), hosts),
            (Placed{"node-a", "node-b", "node-a", "node-b"}));
}

TEST(PlaceSpread, TakesTheLeastLoadedHostFirst) {
  const Hosts hosts = {busy("node-a", 4, 16 * kGiB, 2, 8, 4 * kGiB),  // half of 16 vCPUs
                       busy("node-b", 4, 16 * kGiB, 1, 2, 2 * kGiB),  // an eighth
                       host("node-c", 4, 16 * kGiB)};                 // idle
  EXPECT_EQ(placed(request(3, 2, 2 * kGiB, PlacementPolicy::kSpread), hosts), (Placed{"node-c", "node-b", "node-c"}));
}

TEST(PlaceSpread, FewerVmsBreakAnEqualShare) {
  // Equal shares after the VM; node-b holds fewer VMs, so it wins although node-a sorts first.
  const Hosts hosts = {busy("node-a", 4, 16 * kGiB, 3, 3, 3 * kGiB), busy("node-b", 4, 16 * kGiB, 1, 3, 3 * kGiB)};
  EXPECT_EQ(placed(request(1, 1, kGiB, PlacementPolicy::kSpread), hosts), (Placed{"node-b"}));
}

// ---------------------------------------------------------------------------------------------
// Overcommit, reserve and the edges of "fits"

TEST(PlaceOvercommit, TheCpuRatioChangesWhatFits) {
  const Hosts hosts = {host("node-a", 4, 64 * kGiB)};
  auto at_one = place(request(4, 2, kGiB, PlacementPolicy::kPack, {.cpu = 1}), hosts);
  EXPECT_EQ(at_one.status().code(), StatusCode::kResourceExhausted) << at_one.status();
  expect_mentions(at_one.status(), "2 of 4");
  expect_mentions(at_one.status(), "node-a: 0 of 4 vCPUs free (1x overcommit), needs 2");
  EXPECT_EQ(placed(request(4, 2, kGiB, PlacementPolicy::kPack, {.cpu = 2}), hosts), Placed(4, "node-a"));
}

TEST(PlaceOvercommit, TheMemoryRatioAndReserveChangeWhatFits) {
  const Hosts hosts = {host("node-a", 64, 8 * kGiB)};
  EXPECT_EQ(place(request(3, 1, 4 * kGiB), hosts).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(placed(request(3, 1, 4 * kGiB, PlacementPolicy::kPack, {.memory = 1.5}), hosts), Placed(3, "node-a"));
  // With 2 GiB reserved, 1.5 x 6 GiB = 9 GiB: two 4 GiB VMs, not three.
  auto reserved =
      place(request(3, 1, 4 * kGiB, PlacementPolicy::kPack, {.memory = 1.5, .memory_reserved_bytes = 2 * kGiB}), hosts);
  EXPECT_EQ(reserved.status().code(), StatusCode::kResourceExhausted) << reserved.status();
  expect_mentions(reserved.status(),
                  "node-a: 1 GiB of 9 GiB memory free (1.5x overcommit, 2 GiB reserved), needs 4 GiB");
}

TEST(PlaceOvercommit, ExactlyFullFitsAndOneByteMoreDoesNot) {
  const Overcommit oc{.cpu = 1, .memory_reserved_bytes = kGiB};
  const Hosts hosts = {busy("node-a", 8, 8 * kGiB, 1, 6, 3 * kGiB)};  // 2 vCPUs and 4 GiB left
  EXPECT_EQ(placed(request(1, 2, 4 * kGiB, PlacementPolicy::kPack, oc), hosts), (Placed{"node-a"}));
  auto one_byte = place(request(1, 2, 4 * kGiB + 1, PlacementPolicy::kPack, oc), hosts);
  EXPECT_EQ(one_byte.status().code(), StatusCode::kResourceExhausted) << one_byte.status();
  expect_mentions(one_byte.status(), "4 GiB of 7 GiB memory free");
  auto one_vcpu = place(request(1, 3, 4 * kGiB, PlacementPolicy::kPack, oc), hosts);
  EXPECT_EQ(one_vcpu.status().code(), StatusCode::kResourceExhausted) << one_vcpu.status();
  expect_mentions(one_vcpu.status(), "node-a: 2 of 8 vCPUs free (1x overcommit), needs 3");
}

TEST(PlaceOvercommit, AHostAlreadyBeyondItsCapacityTakesNothing) {
  const Hosts hosts = {busy("node-a", 2, 4 * kGiB, 5, 12, 2 * kGiB)};  // 12 of 8 vCPUs held
  auto out = place(request(1, 1, kGiB), hosts);
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted);
  expect_mentions(out.status(), "node-a: 0 of 8 vCPUs free (4x overcommit), needs 1");
}

TEST(PlaceOvercommit, AReserveLargerThanTheMemoryLeavesNoRoom) {
  const Hosts hosts = {host("node-a", 8, 4 * kGiB)};
  auto out = place(request(1, 1, 1, PlacementPolicy::kPack, {.memory_reserved_bytes = 8 * kGiB}), hosts);
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted);
  expect_mentions(out.status(), "0 B of 0 B memory free (1x overcommit, 8 GiB reserved), needs 1 B");
}

// ---------------------------------------------------------------------------------------------
// Batches: placed together, all or nothing

TEST(PlaceBatch, EachVmSeesThoseBeforeIt) {
  // node-a has room for exactly two 4-vCPU VMs (8 x 1); the third goes to node-b.
  const Hosts hosts = {busy("node-a", 8, 64 * kGiB, 1, 0, 0), host("node-b", 8, 64 * kGiB)};
  EXPECT_EQ(placed(request(3, 4, kGiB, PlacementPolicy::kPack, {.cpu = 1}), hosts),
            (Placed{"node-a", "node-a", "node-b"}));
}

TEST(PlaceBatch, AllOrNothingNamesHowManyFitAndWhyEachHostTookNoMore) {
  const Hosts hosts = {host("node-a", 8, 64 * kGiB),                  // two 4-vCPU VMs
                       busy("node-b", 16, 4 * kGiB, 2, 2, 2 * kGiB),  // memory for one
                       {.host_id = "node-c", .online = false, .cpus = 64, .memory_bytes = 256 * kGiB}};
  auto out = place(request(5, 4, 2 * kGiB, PlacementPolicy::kPack, {.cpu = 1}), hosts);
  ASSERT_EQ(out.status().code(), StatusCode::kResourceExhausted) << out.status();
  const Status& s = out.status();
  expect_mentions(s, "3 of 5");
  expect_mentions(s, "node-a: 0 of 8 vCPUs free (1x overcommit), needs 4");
  expect_mentions(s, "node-b: 0 B of 4 GiB memory free (1x overcommit), needs 2 GiB");
  expect_mentions(s, "node-c: offline");
  // The same request for three succeeds: the failure was the batch, not the hosts.
  EXPECT_EQ(placed(request(3, 4, 2 * kGiB, PlacementPolicy::kPack, {.cpu = 1}), hosts),
            (Placed{"node-b", "node-a", "node-a"}));
}

TEST(PlaceBatch, AHostShortOfBothResourcesSaysBoth) {
  const Hosts hosts = {host("node-a", 1, kGiB)};
  auto out = place(request(1, 8, 2 * kGiB), hosts);
  ASSERT_EQ(out.status().code(), StatusCode::kResourceExhausted);
  expect_mentions(out.status(), "0 of 1");
  expect_mentions(out.status(),
                  "node-a: 4 of 4 vCPUs free (4x overcommit), needs 8 and 1 GiB of 1 GiB memory free (1x "
                  "overcommit), needs 2 GiB");
}

TEST(PlaceBatch, OfflineHostsNeverTakeVms) {
  const Hosts hosts = {{.host_id = "node-a", .online = false, .cpus = 64, .memory_bytes = 256 * kGiB},
                       host("node-b", 2, 4 * kGiB)};
  EXPECT_EQ(placed(request(2, 1, kGiB, PlacementPolicy::kSpread), hosts), (Placed{"node-b", "node-b"}));
}

TEST(PlaceBatch, TheLargestBatchIsPlaced) {
  const Hosts hosts = {host("node-a", 256, 1024 * kGiB), host("node-b", 256, 1024 * kGiB)};
  const Placed out = placed(request(1000, 1, kGiB, PlacementPolicy::kSpread), hosts);
  ASSERT_EQ(out.size(), 1000U);
  EXPECT_EQ(std::count(out.begin(), out.end(), "node-a"), 500);
}

// ---------------------------------------------------------------------------------------------
// Ties and determinism

TEST(PlaceTies, TheCachedImageBreaksATie) {
  Hosts hosts = {host("node-a", 8, 32 * kGiB), host("node-b", 8, 32 * kGiB)};
  hosts[1].has_image = true;
  EXPECT_EQ(placed(request(2, 1, kGiB), hosts), (Placed{"node-b", "node-b"}));
  EXPECT_EQ(placed(request(3, 1, kGiB, PlacementPolicy::kSpread), hosts), (Placed{"node-b", "node-a", "node-b"}));
}

TEST(PlaceTies, TheImageNeverOutweighsLoad) {
  Hosts hosts = {busy("node-a", 8, 32 * kGiB, 1, 1, kGiB), host("node-b", 8, 32 * kGiB)};
  hosts[1].has_image = true;
  EXPECT_EQ(placed(request(1, 1, kGiB), hosts), (Placed{"node-a"}));  // pack: the busy host
  EXPECT_EQ(placed(request(1, 1, kGiB, PlacementPolicy::kSpread), hosts), (Placed{"node-b"}));
}

TEST(PlaceTies, TheSmallerHostIdWinsAndInputOrderDoesNotMatter) {
  Hosts hosts = {host("node-c", 8, 32 * kGiB), host("node-a", 8, 32 * kGiB), host("node-b", 8, 32 * kGiB),
                 busy("node-d", 8, 32 * kGiB, 1, 4, 4 * kGiB)};
  const PlacementRequest spread = request(7, 1, kGiB, PlacementPolicy::kSpread);
  const Placed first = placed(spread, hosts);
  EXPECT_EQ(first, (Placed{"node-a", "node-b", "node-c", "node-a", "node-b", "node-c", "node-a"}));
  std::reverse(hosts.begin(), hosts.end());
  EXPECT_EQ(placed(spread, hosts), first);
  std::rotate(hosts.begin(), hosts.begin() + 1, hosts.end());
  EXPECT_EQ(placed(spread, hosts), first);
  EXPECT_EQ(placed(request(2, 1, kGiB), hosts), (Placed{"node-d", "node-d"}));
  // The failure message is the same too.
  const PlacementRequest too_many = request(200, 1, kGiB);
  const Status a = place(too_many, hosts).status();
  std::reverse(hosts.begin(), hosts.end());
  EXPECT_EQ(place(too_many, hosts).status(), a);
}

// ---------------------------------------------------------------------------------------------
// Bad input

TEST(PlaceInvalid, BadRequestsNameTheField) {
  const Hosts hosts = {host("node-a", 8, 32 * kGiB)};
  expect_invalid(place(request(1, 0, kGiB), hosts).status(), "vcpus");
  expect_invalid(place(request(1, 1, 0), hosts).status(), "memory_bytes");
  expect_invalid(place(request(0, 1, kGiB), hosts).status(), "count");
  expect_invalid(place(request(1001, 1, kGiB), hosts).status(), "count is 1001");
  expect_invalid(place(request(1, 1, kGiB, PlacementPolicy::kPack, {.cpu = 65}), hosts).status(), "overcommit.cpu");
  expect_invalid(place(request(1, 1, kGiB, PlacementPolicy::kPack, {.memory = 0}), hosts).status(),
                 "overcommit.memory");
  expect_invalid(place(request(1, 1, kGiB, static_cast<PlacementPolicy>(7)), hosts).status(), "policy");
}

TEST(PlaceInvalid, BadCandidateListsAreInvalid) {
  expect_invalid(place(request(1, 1, kGiB), {}).status(), "hosts");
  expect_invalid(
      place(request(1, 1, kGiB), {host("node-a", 8, kGiB), host("node-b", 8, kGiB), host("node-a", 4, kGiB)}).status(),
      "hosts[2].host_id 'node-a' is given twice");
  expect_invalid(place(request(1, 1, kGiB), {host("", 8, kGiB)}).status(), "hosts[0].host_id is empty");
}

}  // namespace
}  // namespace cloudmgr
