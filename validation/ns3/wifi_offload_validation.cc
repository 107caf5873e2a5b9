// Packet-level reference for offload_gym's flow-level Wi-Fi model (offload_gym/sim/wifi.py::dcf_saturation).
//
// One receiver ("AP", an ad hoc node: no beacons, no association) and n stations on a circle of radius 1 m
// around it, 802.11ax, constant HE rate, 0.8 us guard interval, A-MPDU and A-MSDU off, RTS off, best-effort
// access category.  Every frame carries a 1536-byte MSDU: a 1500-byte UDP payload plus 8 B UDP, 20 B IPv4
// and 8 B LLC/SNAP headers, handed straight to the WifiNetDevice (no IP stack, no ARP, no traffic-control
// queue in front of the MAC).  Throughput counts the 1500-byte payloads that were acknowledged.
//
// Modes
//   --mode=sat     n saturated stations (each keeps a few frames queued at all times) for --simTime seconds
//                  after --warmup seconds.  Reports the total payload throughput, the mean access delay of
//                  acknowledged frames (time from reaching the head of the station's queue to the ACK that
//                  ends it) and the mean service time per station, simTime * n / acknowledged frames.
//   --mode=upload  k saturated stations; one more station uploads a message of --msgBytes bytes as
//                  1500-byte payload frames (the last one shorter), all queued at once; the completion time
//                  is from queueing to the ACK of the message's last frame.  The message is repeated
//                  --messages times in one run, each after an idle gap drawn uniformly in [gapMin, gapMax].
//                  A frame dropped at the retry limit is queued again (an application-level resend), so
//                  every message completes.
//
// Output: one JSON line on stdout.

#include "ns3/core-module.h"
#include "ns3/mobility-module.h"
#include "ns3/network-module.h"
#include "ns3/wifi-module.h"

#include <cmath>
#include <cstdlib>
#include <deque>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <vector>

using namespace ns3;

namespace
{

const uint32_t kPayload = 1500;    // UDP payload per full frame (bytes)
const uint32_t kUdpIpHeaders = 28; // UDP 8 + IPv4 20; LLC/SNAP (8) is added by WifiNetDevice
const uint32_t kSatQueued = 4;     // frames a saturated station keeps in its queue
const double kMaxDelayS = 10000.0; // WifiMacQueue::MaxDelay: long enough that no frame expires

struct Station
{
    Ptr<WifiNetDevice> dev;
    bool saturated = true;
    Time lastDone = Seconds(0);   // when the previous frame left the head of the queue (ACK or drop)
    std::deque<Time> queued;      // enqueue times of the frames in the queue, FIFO (one AC, one receiver)
    uint64_t acked = 0;           // acknowledged frames inside the measurement window
    uint64_t ackedAll = 0;
    uint64_t retryDrops = 0;      // frames dropped at the retry limit inside the window
    uint64_t otherDrops = 0;
    double delaySum = 0.0;        // sum of head-of-line-to-ACK delays of frames acked in the window
    double delaySqSum = 0.0;
};

std::vector<Station> g_sta;
Address g_apAddr;
Time g_winStart;
Time g_winEnd;
uint64_t g_dataTx = 0;   // data PPDUs sent in the window (attempts)
uint64_t g_ackTx = 0;    // ACK PPDUs sent in the window
uint64_t g_otherTx = 0;  // anything else (should stay 0: no RTS, no BlockAck, no management)
double g_dataPpduS = 0.0;
double g_shortPpduS = 0.0;
double g_ackPpduS = 0.0;
double g_eifsMinusDifs = 0.0;

// upload mode
std::string g_mode = "sat";
uint32_t g_msgBytes = 50000;
uint32_t g_messages = 10;
uint32_t g_msgFramesLeft = 0;  // frames of the current message not yet acknowledged
Time g_msgStart;
bool g_msgFirstSeen = false;
std::vector<double> g_completion;
std::vector<double> g_firstAck;
Ptr<UniformRandomVariable> g_gap;
double g_gapMin = 1e-3;
double g_gapMax = 5e-3;
uint64_t g_uploadRetryDrops = 0;

bool InWindow()
{
    Time now = Simulator::Now();
    return now >= g_winStart && now < g_winEnd;
}

void SendFrame(uint32_t idx, uint32_t payload)
{
    Ptr<Packet> p = Create<Packet>(payload + kUdpIpHeaders);
    g_sta[idx].queued.push_back(Simulator::Now());
    g_sta[idx].dev->Send(p, g_apAddr, 0x0800);
}

void StartMessage();

void OnAcked(uint32_t idx, Ptr<const WifiMpdu> mpdu)
{
    Station& s = g_sta[idx];
    Time now = Simulator::Now();
    if (!mpdu->GetHeader().IsQosData())
    {
        return;
    }
    Time hol = std::max(s.queued.front(), s.lastDone);
    s.queued.pop_front();
    s.lastDone = now;
    s.ackedAll++;
    if (InWindow())
    {
        double d = (now - hol).GetSeconds();
        s.acked++;
        s.delaySum += d;
        s.delaySqSum += d * d;
    }
    if (s.saturated)
    {
        SendFrame(idx, kPayload);
        return;
    }
    // the uploader
    if (!g_msgFirstSeen)
    {
        g_msgFirstSeen = true;
        g_firstAck.push_back((now - g_msgStart).GetSeconds());
    }
    if (g_msgFramesLeft > 0 && --g_msgFramesLeft == 0)
    {
        g_completion.push_back((now - g_msgStart).GetSeconds());
        if (g_completion.size() >= g_messages)
        {
            Simulator::Stop();
            return;
        }
        Simulator::Schedule(Seconds(g_gap->GetValue(g_gapMin, g_gapMax)), &StartMessage);
    }
}

void OnDropped(uint32_t idx, WifiMacDropReason reason, Ptr<const WifiMpdu> mpdu)
{
    Station& s = g_sta[idx];
    if (reason != WIFI_MAC_DROP_REACHED_RETRY_LIMIT)
    {
        if (std::getenv("WOV_DEBUG"))
        {
            std::cerr << Simulator::Now() << " drop reason " << int(reason) << " sta " << idx << " seq "
                      << mpdu->GetHeader().GetSequenceNumber() << std::endl;
        }
        if (InWindow())
        {
            s.otherDrops++;
        }
        return;
    }
    if (std::getenv("WOV_DEBUG"))
    {
        std::cerr << Simulator::Now() << " retry drop sta " << idx << " seq " << mpdu->GetHeader().GetSequenceNumber()
                  << std::endl;
    }
    s.lastDone = Simulator::Now();
    s.queued.pop_front();
    if (InWindow() || !s.saturated)
    {
        s.retryDrops++;
    }
    if (s.saturated)
    {
        SendFrame(idx, kPayload);
    }
    else
    {
        g_uploadRetryDrops++;
        SendFrame(idx, mpdu->GetPacketSize() - kUdpIpHeaders - 8);  // resend the same payload
    }
}

void OnPhyTx(WifiConstPsduMap psduMap, WifiTxVector txVector, double /* txPowerW */)
{
    Ptr<const WifiPsdu> psdu = psduMap.begin()->second;
    const WifiMacHeader& hdr = psdu->GetHeader(0);
    bool inWin = InWindow();
    Time dur = WifiPhy::CalculateTxDuration(psduMap, txVector, WIFI_PHY_BAND_5GHZ);
    if (hdr.IsQosData())
    {
        if (inWin)
        {
            g_dataTx++;
        }
        if (psdu->GetSize() > 1000)
        {
            g_dataPpduS = dur.GetSeconds();
        }
        else
        {
            g_shortPpduS = dur.GetSeconds();
        }
    }
    else if (hdr.IsAck())
    {
        if (inWin)
        {
            g_ackTx++;
        }
        g_ackPpduS = dur.GetSeconds();
    }
    else if (inWin)
    {
        g_otherTx++;
        if (std::getenv("WOV_DEBUG"))
        {
            std::cerr << Simulator::Now() << " other frame " << hdr.GetTypeString() << " size " << psdu->GetSize()
                      << std::endl;
        }
    }
}

void StartMessage()
{
    uint32_t left = g_msgBytes;
    g_msgFramesLeft = 0;
    g_msgStart = Simulator::Now();
    g_msgFirstSeen = false;
    while (left > 0)
    {
        uint32_t payload = std::min(left, kPayload);
        SendFrame(0, payload);
        left -= payload;
        g_msgFramesLeft++;
    }
}

} // namespace

int main(int argc, char* argv[])
{
    uint32_t n = 10;          // saturated stations (mode sat)
    uint32_t k = 0;           // background saturated stations (mode upload)
    std::string phyCase = "mcs11";
    uint32_t seed = 1;
    uint32_t run = 1;
    double simTime = 2.0;     // measurement window (mode sat) or time limit (mode upload)
    double warmup = 0.2;

    CommandLine cmd(__FILE__);
    cmd.AddValue("mode", "sat or upload", g_mode);
    cmd.AddValue("n", "saturated stations (mode sat)", n);
    cmd.AddValue("k", "background saturated stations (mode upload)", k);
    cmd.AddValue("msgBytes", "message size in bytes (mode upload)", g_msgBytes);
    cmd.AddValue("messages", "messages uploaded one after another in this run (mode upload)", g_messages);
    cmd.AddValue("gapMin", "shortest idle gap between messages (s)", g_gapMin);
    cmd.AddValue("gapMax", "longest idle gap between messages (s)", g_gapMax);
    cmd.AddValue("phy", "mcs7 (HE-MCS7 20 MHz 1 SS) or mcs11 (HE-MCS11 80 MHz 2 SS)", phyCase);
    cmd.AddValue("seed", "RngSeed", seed);
    cmd.AddValue("run", "RngRun", run);
    cmd.AddValue("simTime", "measurement window (sat) or time limit (upload), seconds", simTime);
    cmd.AddValue("warmup", "seconds before measuring (sat) or before the first message (upload)", warmup);
    cmd.Parse(argc, argv);

    RngSeedManager::SetSeed(seed);
    RngSeedManager::SetRun(run);

    std::string dataMode;
    uint16_t width;
    uint8_t nss;
    if (phyCase == "mcs7")
    {
        dataMode = "HeMcs7";
        width = 20;
        nss = 1;
    }
    else if (phyCase == "mcs11")
    {
        dataMode = "HeMcs11";
        width = 80;
        nss = 2;
    }
    else
    {
        std::cerr << "unknown --phy " << phyCase << std::endl;
        return 2;
    }
    uint32_t nSta = (g_mode == "sat") ? n : k + 1;
    if (nSta < 1)
    {
        std::cerr << "need at least one station" << std::endl;
        return 2;
    }

    // large queues that never expire frames: saturation is kept by the sources, not by queue overflow
    Config::SetDefault("ns3::WifiMacQueue::MaxSize", QueueSizeValue(QueueSize("100000p")));
    Config::SetDefault("ns3::WifiMacQueue::MaxDelay", TimeValue(Seconds(kMaxDelayS)));

    NodeContainer ap;
    ap.Create(1);
    NodeContainer stas;
    stas.Create(nSta);

    YansWifiChannelHelper channel = YansWifiChannelHelper::Default();
    YansWifiPhyHelper phy;
    phy.SetChannel(channel.Create());
    std::ostringstream chs;
    chs << "{0, " << width << ", BAND_5GHZ, 0}";
    phy.Set("ChannelSettings", StringValue(chs.str()));
    phy.Set("Antennas", UintegerValue(nss));
    phy.Set("MaxSupportedTxSpatialStreams", UintegerValue(nss));
    phy.Set("MaxSupportedRxSpatialStreams", UintegerValue(nss));

    WifiHelper wifi;
    wifi.SetStandard(WIFI_STANDARD_80211ax);
    wifi.SetRemoteStationManager("ns3::ConstantRateWifiManager",
                                 "DataMode", StringValue(dataMode),
                                 "ControlMode", StringValue("OfdmRate24Mbps"));

    WifiMacHelper mac;
    mac.SetType("ns3::AdhocWifiMac",
                "QosSupported", BooleanValue(true),
                "BE_MaxAmpduSize", UintegerValue(0),
                "BE_MaxAmsduSize", UintegerValue(0));

    NetDeviceContainer apDev = wifi.Install(phy, mac, ap);
    NetDeviceContainer staDev = wifi.Install(phy, mac, stas);

    NetDeviceContainer all(apDev, staDev);
    for (uint32_t i = 0; i < all.GetN(); ++i)
    {
        Ptr<WifiNetDevice> dev = DynamicCast<WifiNetDevice>(all.Get(i));
        dev->GetHeConfiguration()->SetGuardInterval(NanoSeconds(800));
        // the usual 5 GHz basic rate set: control responses (ACK) go at 24 Mb/s
        Ptr<WifiRemoteStationManager> rsm = dev->GetRemoteStationManager();
        rsm->AddBasicMode(WifiMode("OfdmRate6Mbps"));
        rsm->AddBasicMode(WifiMode("OfdmRate12Mbps"));
        rsm->AddBasicMode(WifiMode("OfdmRate24Mbps"));
    }

    MobilityHelper mobility;
    Ptr<ListPositionAllocator> pos = CreateObject<ListPositionAllocator>();
    pos->Add(Vector(0.0, 0.0, 0.0));
    for (uint32_t i = 0; i < nSta; ++i)
    {
        double a = 2.0 * M_PI * i / nSta;
        pos->Add(Vector(std::cos(a), std::sin(a), 0.0));
    }
    mobility.SetPositionAllocator(pos);
    mobility.SetMobilityModel("ns3::ConstantPositionMobilityModel");
    mobility.Install(ap);
    mobility.Install(stas);

    g_apAddr = apDev.Get(0)->GetAddress();
    g_sta.resize(nSta);
    Ptr<UniformRandomVariable> jitter = CreateObject<UniformRandomVariable>();
    g_gap = CreateObject<UniformRandomVariable>();
    for (uint32_t i = 0; i < nSta; ++i)
    {
        Station& s = g_sta[i];
        s.dev = DynamicCast<WifiNetDevice>(staDev.Get(i));
        s.saturated = (g_mode == "sat") || i > 0;
        Ptr<WifiMac> m = s.dev->GetMac();
        m->TraceConnectWithoutContext("AckedMpdu", MakeBoundCallback(&OnAcked, i));
        m->TraceConnectWithoutContext("DroppedMpdu", MakeBoundCallback(&OnDropped, i));
        if (s.saturated)
        {
            Time t = MicroSeconds(jitter->GetInteger(0, 1000));
            for (uint32_t q = 0; q < kSatQueued; ++q)
            {
                Simulator::Schedule(t, &SendFrame, i, kPayload);
            }
        }
    }
    for (uint32_t i = 0; i < all.GetN(); ++i)
    {
        DynamicCast<WifiNetDevice>(all.Get(i))->GetPhy()->TraceConnectWithoutContext("PhyTxPsduBegin",
                                                                                     MakeCallback(&OnPhyTx));
    }
    Ptr<WifiPhy> phy0 = DynamicCast<WifiNetDevice>(apDev.Get(0))->GetPhy();
    g_eifsMinusDifs = (phy0->GetSifs() + phy0->GetAckTxTime()).GetSeconds();
    Ptr<QosTxop> be = DynamicCast<WifiNetDevice>(apDev.Get(0))->GetMac()->GetQosTxop(AC_BE);

    if (g_mode == "sat")
    {
        g_winStart = Seconds(warmup);
        g_winEnd = Seconds(warmup + simTime);
        Simulator::Stop(g_winEnd);
    }
    else
    {
        g_winStart = Seconds(warmup);
        g_winEnd = Seconds(warmup + simTime);
        Simulator::Schedule(Seconds(warmup), &StartMessage);
        Simulator::Stop(g_winEnd);
    }
    Simulator::Run();

    uint64_t acked = 0, retryDrops = 0, otherDrops = 0;
    double dsum = 0.0, dsq = 0.0;
    for (uint32_t i = 0; i < nSta; ++i)
    {
        if (!g_sta[i].saturated)
        {
            continue;
        }
        acked += g_sta[i].acked;
        retryDrops += g_sta[i].retryDrops;
        otherDrops += g_sta[i].otherDrops;
        dsum += g_sta[i].delaySum;
        dsq += g_sta[i].delaySqSum;
    }
    double window = (std::min(Simulator::Now(), g_winEnd) - g_winStart).GetSeconds();
    uint32_t nSat = (g_mode == "sat") ? nSta : k;

    std::ostringstream o;
    o << std::setprecision(9);
    o << "{\"mode\": \"" << g_mode << "\", \"phy\": \"" << phyCase << "\", \"run\": " << run
      << ", \"seed\": " << seed << ", \"n\": " << nSta << ", \"k\": " << k << ", \"window_s\": " << window;
    o << ", \"data_ppdu_s\": " << g_dataPpduS << ", \"short_ppdu_s\": " << g_shortPpduS
      << ", \"ack_ppdu_s\": " << g_ackPpduS << ", \"eifs_minus_aifs_s\": " << g_eifsMinusDifs
      << ", \"aifsn\": " << unsigned(be->GetAifsn(0)) << ", \"cw_min\": " << be->GetMinCw(0)
      << ", \"cw_max\": " << be->GetMaxCw(0);
    o << ", \"data_tx\": " << g_dataTx << ", \"ack_tx\": " << g_ackTx << ", \"other_tx\": " << g_otherTx;
    o << ", \"sat_acked\": " << acked << ", \"sat_retry_drops\": " << retryDrops
      << ", \"sat_other_drops\": " << otherDrops;
    if (nSat > 0 && window > 0)
    {
        double mean = acked ? dsum / acked : 0.0;
        double sd = acked > 1 ? std::sqrt(std::max(0.0, dsq / acked - mean * mean)) : 0.0;
        o << ", \"throughput_bps\": " << acked * 8.0 * kPayload / window
          << ", \"access_delay_s\": " << mean << ", \"access_delay_sd_s\": " << sd
          << ", \"service_time_s\": " << (acked ? window * nSat / acked : 0.0);
    }
    if (g_mode == "upload")
    {
        o << ", \"msg_bytes\": " << g_msgBytes << ", \"upload_retry_drops\": " << g_uploadRetryDrops
          << ", \"completion_s\": [";
        for (size_t i = 0; i < g_completion.size(); ++i)
        {
            o << (i ? ", " : "") << g_completion[i];
        }
        o << "], \"first_ack_s\": [";
        for (size_t i = 0; i < g_firstAck.size(); ++i)
        {
            o << (i ? ", " : "") << g_firstAck[i];
        }
        o << "]";
    }
    o << "}";
    std::cout << o.str() << std::endl;
    Simulator::Destroy();
    return 0;
}
