// The names on the bus: DDS topics and partitions (idl/cloudmgr.idl says what travels on
// each). Internal; written once here for the DDS transport and for the PKI, whose
// permissions documents grant each role its topics and partitions.
#pragma once

namespace cloudmgr::bus {

inline constexpr char kHostTopic[] = "cloudmgr/HostStatus";
inline constexpr char kVmTopic[] = "cloudmgr/VmStatus";
inline constexpr char kCommandTopic[] = "cloudmgr/Command";
inline constexpr char kReplyTopic[] = "cloudmgr/CommandReply";
inline constexpr char kMetricsTopic[] = "cloudmgr/HostMetrics";
inline constexpr char kHistoryTopic[] = "cloudmgr/HistoryReply";
inline constexpr char kAuditTopic[] = "cloudmgr/AuditReply";
inline constexpr char kImagesTopic[] = "cloudmgr/HostImages";
inline constexpr char kChunkTopic[] = "cloudmgr/ImageChunk";

// Commands go to "all", "host.<id>" or "group.<name>" (Target::partition()). Everything an
// agent writes goes to its own "host.<id>", so that permissions can confine each agent's
// writers to its own host; managers read "host.*".
inline constexpr char kAllPartition[] = "all";
inline constexpr char kHostPartitionPrefix[] = "host.";
inline constexpr char kAnyHostPartition[] = "host.*";
inline constexpr char kAnyGroupPartition[] = "group.*";

// The verbs whose answer rides its own reply topic (HistoryReply, AuditReply) rather than
// CommandReply.
inline constexpr char kHistoryVerb[] = "monitor.history";
inline constexpr char kAuditVerb[] = "host.audit";

}  // namespace cloudmgr::bus
