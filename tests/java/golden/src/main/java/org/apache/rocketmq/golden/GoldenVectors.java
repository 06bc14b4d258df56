package org.apache.rocketmq.golden;

import com.alibaba.fastjson.JSON;
import com.alibaba.fastjson.serializer.SerializerFeature;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Date;
import java.util.HashMap;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TimeZone;
import java.util.TreeMap;
import java.util.TreeSet;
import org.apache.rocketmq.common.UtilAll;
import org.apache.rocketmq.common.compression.CompressionType;
import org.apache.rocketmq.common.compression.Compressor;
import org.apache.rocketmq.common.compression.CompressorFactory;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.filter.ExpressionType;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageAccessor;
import org.apache.rocketmq.common.message.MessageClientExt;
import org.apache.rocketmq.common.message.MessageClientIDSetter;
import org.apache.rocketmq.common.message.MessageConst;
import org.apache.rocketmq.common.message.MessageDecoder;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageId;
import org.apache.rocketmq.common.message.MessageQueue;
import org.apache.rocketmq.common.message.MessageVersion;
import org.apache.rocketmq.common.sysflag.MessageSysFlag;
import org.apache.rocketmq.remoting.protocol.LanguageCode;
import org.apache.rocketmq.remoting.protocol.RemotingCommand;
import org.apache.rocketmq.remoting.protocol.RequestCode;
import org.apache.rocketmq.remoting.protocol.ResponseCode;
import org.apache.rocketmq.remoting.protocol.SerializeType;
import org.apache.rocketmq.remoting.protocol.body.CMResult;
import org.apache.rocketmq.remoting.protocol.body.ConsumeMessageDirectlyResult;
import org.apache.rocketmq.remoting.protocol.body.ConsumeStatus;
import org.apache.rocketmq.remoting.protocol.body.ConsumerRunningInfo;
import org.apache.rocketmq.remoting.protocol.body.GetConsumerStatusBody;
import org.apache.rocketmq.remoting.protocol.body.LockBatchRequestBody;
import org.apache.rocketmq.remoting.protocol.body.LockBatchResponseBody;
import org.apache.rocketmq.remoting.protocol.body.ProcessQueueInfo;
import org.apache.rocketmq.remoting.protocol.body.ResetOffsetBody;
import org.apache.rocketmq.remoting.protocol.header.GetConsumerListByGroupResponseBody;
import org.apache.rocketmq.remoting.protocol.header.PullMessageResponseHeader;
import org.apache.rocketmq.remoting.protocol.header.SendMessageRequestHeader;
import org.apache.rocketmq.remoting.protocol.header.SendMessageRequestHeaderV2;
import org.apache.rocketmq.remoting.protocol.header.namesrv.GetRouteInfoRequestHeader;
import org.apache.rocketmq.remoting.protocol.heartbeat.ConsumeType;
import org.apache.rocketmq.remoting.protocol.heartbeat.ConsumerData;
import org.apache.rocketmq.remoting.protocol.heartbeat.HeartbeatData;
import org.apache.rocketmq.remoting.protocol.heartbeat.MessageModel;
import org.apache.rocketmq.remoting.protocol.heartbeat.ProducerData;
import org.apache.rocketmq.remoting.protocol.heartbeat.SubscriptionData;
import org.apache.rocketmq.remoting.protocol.route.BrokerData;
import org.apache.rocketmq.remoting.protocol.route.QueueData;
import org.apache.rocketmq.remoting.protocol.route.TopicRouteData;

/**
 * Writes golden test vectors produced by the real Apache RocketMQ 5.3.3 Java classes.
 * Usage: GoldenVectors &lt;outDir&gt;
 */
public final class GoldenVectors {

    static final int VERSION = 479; // MQVersion.Version.V5_3_3.ordinal()
    static final HexFormat HEX = HexFormat.of(); // lower-case hex

    static Path out;
    static final Map<String, String> readme = new LinkedHashMap<>();

    public static void main(String[] args) throws Exception {
        // Deterministic local time for MessageClientIDSetter (ms since start of month, local time).
        TimeZone.setDefault(TimeZone.getTimeZone("UTC"));
        if (args.length < 1) {
            System.err.println("usage: GoldenVectors <outDir>");
            System.exit(2);
        }
        out = Paths.get(args[0]);
        Files.createDirectories(out);

        if (VERSION != org.apache.rocketmq.common.MQVersion.Version.V5_3_3.ordinal()) {
            throw new IllegalStateException("V5_3_3 ordinal mismatch");
        }

        frames();
        byte[] v1 = storedV1Ipv4();
        pullResponses(v1);
        storedV2Ipv6();
        storedCompressed("stored_zlib", CompressionType.ZLIB);
        storedCompressed("stored_lz4", CompressionType.LZ4);
        storedCompressed("stored_zstd", CompressionType.ZSTD);
        batchBody();
        properties();
        messageIds();
        tagHashes();
        jsonBodies();
        writeReadme();
        System.out.println("golden vectors written to " + out.toAbsolutePath());
    }

    // ------------------------------------------------------------------ helpers

    static void writeBin(String name, byte[] data, String how) throws IOException {
        Files.write(out.resolve(name), data);
        readme.put(name, how);
    }

    static void writeText(String name, String text, String how) throws IOException {
        Files.write(out.resolve(name), text.getBytes(StandardCharsets.UTF_8));
        readme.put(name, how);
    }

    static void writeJson(String name, Object value, String how) throws IOException {
        String s = JSON.toJSONString(value, SerializerFeature.PrettyFormat, SerializerFeature.WriteMapNullValue,
            SerializerFeature.DisableCircularReferenceDetect) + "\n";
        writeText(name, s, how);
    }

    static String hex(byte[] b) {
        return b == null ? null : HEX.formatHex(b);
    }

    static Map<String, Object> obj() {
        return new LinkedHashMap<>();
    }

    /** Exactly what NettyEncoder.encode emits: fastEncodeHeader(out) then the body. */
    static byte[] nettyEncode(RemotingCommand cmd) {
        ByteBuf buf = Unpooled.buffer();
        cmd.fastEncodeHeader(buf);
        byte[] body = cmd.getBody();
        if (body != null) {
            buf.writeBytes(body);
        }
        byte[] r = new byte[buf.readableBytes()];
        buf.readBytes(r);
        return r;
    }

    /** Decodes a frame the way NettyDecoder does (strip the 4-byte length, RemotingCommand.decode). */
    static Map<String, Object> describeFrame(byte[] frame) throws Exception {
        ByteBuffer bb = ByteBuffer.wrap(frame);
        int length = bb.getInt();
        if (length != frame.length - 4) {
            throw new IllegalStateException("bad length prefix");
        }
        int headerLenAndType = bb.getInt(4);
        RemotingCommand cmd = RemotingCommand.decode(ByteBuffer.wrap(frame, 4, frame.length - 4).slice());
        Map<String, Object> m = obj();
        m.put("totalLength", frame.length);
        m.put("lengthField", length);
        m.put("serializeTypeByte", (headerLenAndType >>> 24) & 0xFF);
        m.put("headerLength", headerLenAndType & 0xFFFFFF);
        m.put("code", cmd.getCode());
        m.put("language", cmd.getLanguage() == null ? null : cmd.getLanguage().name());
        m.put("version", cmd.getVersion());
        m.put("opaque", cmd.getOpaque());
        m.put("flag", cmd.getFlag());
        m.put("isResponse", cmd.isResponseType());
        m.put("isOneway", cmd.isOnewayRPC());
        m.put("remark", cmd.getRemark());
        m.put("extFields", cmd.getExtFields() == null ? null : new TreeMap<>(cmd.getExtFields()));
        m.put("serializeTypeCurrentRPC", cmd.getSerializeTypeCurrentRPC().name());
        m.put("body", hex(cmd.getBody()));
        return m;
    }

    static void frame(String name, RemotingCommand cmd, String how) throws Exception {
        byte[] f = nettyEncode(cmd);
        writeBin(name + ".bin", f, how);
        writeJson(name + ".expect.json", describeFrame(f),
            "RemotingCommand.decode(ByteBuffer) of " + name + ".bin minus its 4-byte length prefix (as NettyDecoder does); "
                + "extFields sorted by key, body as hex");
    }

    // ------------------------------------------------------------------ frames

    static RemotingCommand routeRequest(SerializeType type) {
        GetRouteInfoRequestHeader h = new GetRouteInfoRequestHeader();
        h.setTopic("TopicTest");
        h.setAcceptStandardJsonOnly(true);
        RemotingCommand cmd = RemotingCommand.createRequestCommand(RequestCode.GET_ROUTEINFO_BY_TOPIC, h);
        cmd.setVersion(VERSION);
        cmd.setLanguage(LanguageCode.JAVA);
        cmd.setOpaque(7);
        cmd.setSerializeTypeCurrentRPC(type);
        return cmd;
    }

    static RemotingCommand responseCmd(SerializeType type) {
        RemotingCommand cmd = RemotingCommand.createResponseCommand(ResponseCode.SYSTEM_ERROR, "broker busy, 中文");
        cmd.setVersion(VERSION);
        cmd.setLanguage(LanguageCode.JAVA);
        cmd.setOpaque(42);
        cmd.addExtField("MSG_REGION", "DefaultRegion");
        cmd.addExtField("TRACE_ON", "true");
        cmd.addExtField("key-中文", "值 value");
        cmd.setBody("hello".getBytes(StandardCharsets.UTF_8));
        cmd.setSerializeTypeCurrentRPC(type);
        return cmd;
    }

    static final String SEND_UNIQ_KEY = "7F0000010D2C18B4AAC2665D7E500000";

    static String sendProperties() {
        Message msg = new Message("TopicTest", "TagA", "KEY1 KEY2", "Hello RocketMQ".getBytes(StandardCharsets.UTF_8));
        MessageAccessor.putProperty(msg, MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX, SEND_UNIQ_KEY);
        return MessageDecoder.messageProperties2String(msg.getProperties());
    }

    static RemotingCommand sendV2(SerializeType type) {
        SendMessageRequestHeader v1 = new SendMessageRequestHeader();
        v1.setProducerGroup("PG_TEST");
        v1.setTopic("TopicTest");
        v1.setDefaultTopic("TBW102");
        v1.setDefaultTopicQueueNums(4);
        v1.setQueueId(2);
        v1.setSysFlag(0);
        v1.setBornTimestamp(1732500000000L);
        v1.setFlag(0);
        v1.setProperties(sendProperties());
        v1.setReconsumeTimes(0);
        v1.setUnitMode(false);
        v1.setBatch(false);
        v1.setBrokerName("broker-a");
        SendMessageRequestHeaderV2 v2 = SendMessageRequestHeaderV2.createSendMessageRequestHeaderV2(v1);
        RemotingCommand cmd = RemotingCommand.createRequestCommand(RequestCode.SEND_MESSAGE_V2, v2);
        cmd.setVersion(VERSION);
        cmd.setLanguage(LanguageCode.JAVA);
        cmd.setOpaque(1001);
        cmd.setBody("Hello RocketMQ".getBytes(StandardCharsets.UTF_8));
        cmd.setSerializeTypeCurrentRPC(type);
        return cmd;
    }

    static RemotingCommand pullResponse(SerializeType type, byte[] body) {
        // as PullMessageProcessor does: createResponseCommand(PullMessageResponseHeader.class), then fill in
        RemotingCommand cmd = RemotingCommand.createResponseCommand(PullMessageResponseHeader.class);
        cmd.setCode(ResponseCode.SUCCESS);
        cmd.setRemark("FOUND");
        PullMessageResponseHeader h = (PullMessageResponseHeader) cmd.readCustomHeader();
        h.setSuggestWhichBrokerId(0L);
        h.setNextBeginOffset(32L);
        h.setMinOffset(0L);
        h.setMaxOffset(100L);
        cmd.setVersion(VERSION);
        cmd.setLanguage(LanguageCode.JAVA);
        cmd.setOpaque(2002);
        cmd.setBody(body);
        cmd.setSerializeTypeCurrentRPC(type);
        return cmd;
    }

    static void frames() throws Exception {
        String enc = "RemotingCommand.fastEncodeHeader(ByteBuf) + body (NettyEncoder.encode), ";
        frame("frame_request_json", routeRequest(SerializeType.JSON), enc
            + "createRequestCommand(GET_ROUTEINFO_BY_TOPIC=105, GetRouteInfoRequestHeader{topic=TopicTest, acceptStandardJsonOnly=true}), "
            + "version 479, language JAVA, opaque 7, serializeTypeCurrentRPC JSON, no body");
        frame("frame_request_rocketmq", routeRequest(SerializeType.ROCKETMQ), enc
            + "same command as frame_request_json but serializeTypeCurrentRPC ROCKETMQ");

        RemotingCommand worked = RemotingCommand.createRequestCommand(RequestCode.GET_ROUTEINFO_BY_TOPIC, null);
        worked.setVersion(VERSION);
        worked.setLanguage(LanguageCode.RUST);
        worked.setOpaque(1);
        worked.addExtField("topic", "T");
        worked.setSerializeTypeCurrentRPC(SerializeType.ROCKETMQ);
        frame("frame_worked_example_rocketmq", worked, enc
            + "createRequestCommand(105, null) + addExtField(topic,T), language RUST, version 479, opaque 1, ROCKETMQ "
            + "(protocol.md section 1 worked example)");

        frame("frame_response_json", responseCmd(SerializeType.JSON), enc
            + "createResponseCommand(SYSTEM_ERROR=1, \"broker busy, 中文\") (flag=1), version 479, language JAVA, opaque 42, "
            + "addExtField x3, body \"hello\", JSON");
        frame("frame_response_rocketmq", responseCmd(SerializeType.ROCKETMQ), enc
            + "same command as frame_response_json but ROCKETMQ");

        frame("frame_send_v2_json", sendV2(SerializeType.JSON), enc
            + "createRequestCommand(SEND_MESSAGE_V2=310, SendMessageRequestHeaderV2.createSendMessageRequestHeaderV2(SendMessageRequestHeader{"
            + "PG_TEST, TopicTest, TBW102, 4, queueId 2, sysFlag 0, born 1732500000000, flag 0, properties=messageProperties2String("
            + "new Message(TopicTest, TagA, \"KEY1 KEY2\", body) + UNIQ_KEY " + SEND_UNIQ_KEY + "), reconsumeTimes 0, unitMode false, "
            + "batch false, brokerName broker-a})), version 479, JAVA, opaque 1001, body \"Hello RocketMQ\", JSON");
        frame("frame_send_v2_rocketmq", sendV2(SerializeType.ROCKETMQ), enc
            + "same command as frame_send_v2_json but ROCKETMQ (FastCodesHeader path: keys a..n written by SendMessageRequestHeaderV2.encode)");

        RemotingCommand dup = sendV2(SerializeType.ROCKETMQ);
        dup.makeCustomHeaderToNet(); // what AclClientRPCHook.parseRequestContent does before the encoder runs
        frame("frame_send_v2_rocketmq_dupkeys", dup, enc
            + "same command as frame_send_v2_rocketmq but RemotingCommand.makeCustomHeaderToNet() was called first (as AclClientRPCHook does), "
            + "so keys a..n are written twice: first by SendMessageRequestHeaderV2.encode, then again from the generic extFields HashMap");
    }

    static void pullResponses(byte[] body) throws Exception {
        String enc = "RemotingCommand.fastEncodeHeader(ByteBuf) + body (NettyEncoder.encode), ";
        frame("frame_pull_response_json", pullResponse(SerializeType.JSON, body), enc
            + "createResponseCommand(PullMessageResponseHeader.class) then code SUCCESS, remark FOUND, header{suggestWhichBrokerId 0, "
            + "nextBeginOffset 32, minOffset 0, maxOffset 100}, version 479, JAVA, opaque 2002, body = stored_v1_ipv4.bin, JSON");
        frame("frame_pull_response_rocketmq", pullResponse(SerializeType.ROCKETMQ, body), enc
            + "same command as frame_pull_response_json but ROCKETMQ (FastCodesHeader path via PullMessageResponseHeader.encode)");
    }

    // ------------------------------------------------------------------ stored messages

    static InetSocketAddress addr(String ip, int port) throws Exception {
        return new InetSocketAddress(InetAddress.getByName(ip), port);
    }

    static String hostStr(java.net.SocketAddress sa) {
        InetSocketAddress a = (InetSocketAddress) sa;
        return a.getAddress().getHostAddress() + ":" + a.getPort();
    }

    static Map<String, Object> describeMsg(MessageExt m) throws Exception {
        Map<String, Object> d = obj();
        d.put("topic", m.getTopic());
        d.put("body", hex(m.getBody()));
        d.put("bodyLength", m.getBody() == null ? 0 : m.getBody().length);
        d.put("flag", m.getFlag());
        d.put("queueId", m.getQueueId());
        d.put("queueOffset", m.getQueueOffset());
        d.put("commitLogOffset", m.getCommitLogOffset());
        d.put("sysFlag", m.getSysFlag());
        d.put("bornTimestamp", m.getBornTimestamp());
        d.put("bornHost", hostStr(m.getBornHost()));
        d.put("bornHostIp", ((InetSocketAddress) m.getBornHost()).getAddress().getHostAddress());
        d.put("bornHostPort", ((InetSocketAddress) m.getBornHost()).getPort());
        d.put("storeTimestamp", m.getStoreTimestamp());
        d.put("storeHost", hostStr(m.getStoreHost()));
        d.put("storeHostIp", ((InetSocketAddress) m.getStoreHost()).getAddress().getHostAddress());
        d.put("storeHostPort", ((InetSocketAddress) m.getStoreHost()).getPort());
        d.put("reconsumeTimes", m.getReconsumeTimes());
        d.put("preparedTransactionOffset", m.getPreparedTransactionOffset());
        d.put("bodyCRC", m.getBodyCRC());
        d.put("storeSize", m.getStoreSize());
        d.put("properties", m.getProperties() == null ? null : new TreeMap<>(m.getProperties()));
        d.put("msgId", m.getMsgId());
        String offsetMsgId = MessageDecoder.createMessageId(m.getStoreHost(), m.getCommitLogOffset());
        d.put("offsetMsgId", offsetMsgId);
        if (m instanceof MessageClientExt) {
            String fromDecoder = ((MessageClientExt) m).getOffsetMsgId();
            if (!offsetMsgId.equals(fromDecoder)) {
                throw new IllegalStateException("offsetMsgId mismatch " + offsetMsgId + " vs " + fromDecoder);
            }
        }
        d.put("tags", m.getTags());
        d.put("keys", m.getKeys());
        return d;
    }

    /** MessageDecoder.decodes(ByteBuffer, readBody=true) = clientDecode(readBody=true, deCompressBody=true, isClient=true). */
    static List<MessageExt> javaDecode(byte[] data, int expectedCount) {
        List<MessageExt> msgs = MessageDecoder.decodes(ByteBuffer.wrap(data), true);
        if (msgs.size() != expectedCount) {
            throw new IllegalStateException("MessageDecoder.decodes returned " + msgs.size() + " messages, expected " + expectedCount);
        }
        return msgs;
    }

    static Map<String, Object> expectFor(byte[] data, List<MessageExt> msgs, String note) throws Exception {
        Map<String, Object> e = obj();
        e.put("decodedBy", "MessageDecoder.decodes(ByteBuffer.wrap(bytes), readBody=true) -> clientDecode(readBody=true, deCompressBody=true, isClient=true), MessageClientExt");
        if (note != null) {
            e.put("note", note);
        }
        e.put("totalBytes", data.length);
        e.put("count", msgs.size());
        List<Object> list = new ArrayList<>();
        for (MessageExt m : msgs) {
            list.add(describeMsg(m));
        }
        e.put("messages", list);
        return e;
    }

    static byte[] concat(List<byte[]> parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        ByteBuffer bb = ByteBuffer.allocate(n);
        for (byte[] p : parts) {
            bb.put(p);
        }
        return bb.array();
    }

    static byte[] bodyOfSize(int n, String seed) {
        StringBuilder sb = new StringBuilder();
        int i = 0;
        while (sb.length() < n) {
            sb.append(seed).append(' ').append(i++).append(';');
        }
        return sb.substring(0, n).getBytes(StandardCharsets.US_ASCII);
    }

    static MessageExt baseMsg(String topic, byte[] body) {
        MessageExt m = new MessageExt();
        m.setTopic(topic);
        m.setBody(body);
        m.setBodyCRC(UtilAll.crc32(body));
        return m;
    }

    static byte[] storedV1Ipv4() throws Exception {
        byte[][] bodies = {new byte[0], "Hello RocketMQ".substring(0, 13).getBytes(StandardCharsets.UTF_8),
            bodyOfSize(300, "payload")};
        String[] tags = {"TagA", "TagB", null};
        String[] keys = {"KEY1", "KEY2 KEY3", null};
        String[] uniq = {"0A00000500002A9F0000000000000001", "0A00000500002A9F0000000000000002", "0A00000500002A9F0000000000000003"};
        List<MessageExt> msgs = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            MessageExt m = baseMsg("TopicTest", bodies[i]);
            if (tags[i] != null) {
                m.setTags(tags[i]);
            }
            if (keys[i] != null) {
                m.setKeys(keys[i]);
            }
            m.setWaitStoreMsgOK(true);
            MessageAccessor.putProperty(m, MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX, uniq[i]);
            m.putUserProperty("userKey" + i, "userValue-" + i);
            if (i == 2) {
                m.putUserProperty("unicode", "中文 ✓");
                MessageAccessor.putProperty(m, MessageConst.PROPERTY_MIN_OFFSET, "0"); // arbitrary extra system key
            }
            m.setFlag(i * 7);
            m.setQueueId(1);
            m.setQueueOffset(10 + i);
            m.setSysFlag(0);
            m.setBornTimestamp(1732500000000L + i);
            m.setBornHost(addr("10.0.0.5", 54321));
            m.setStoreTimestamp(1732500000100L + i);
            m.setStoreHost(addr("192.168.0.1", 10911));
            m.setReconsumeTimes(i == 1 ? 3 : 0);
            m.setPreparedTransactionOffset(0);
            msgs.add(m);
        }
        List<byte[]> parts = new ArrayList<>();
        long commitLog = 0x1000;
        for (MessageExt m : msgs) {
            m.setCommitLogOffset(commitLog);
            byte[] rec = MessageDecoder.encode(m, false);
            parts.add(rec);
            commitLog += rec.length;
        }
        byte[] data = concat(parts);
        writeBin("stored_v1_ipv4.bin", data,
            "3 x MessageDecoder.encode(MessageExt, needCompress=false) concatenated (magic v1, IPv4 hosts 10.0.0.5:54321 / 192.168.0.1:10911, "
                + "bodies 0/13/300 bytes, bodyCRC = UtilAll.crc32(body), commitLogOffset 0x1000 + running size)");
        writeJson("stored_v1_ipv4.expect.json", expectFor(data, javaDecode(data, 3), "empty body decodes to body=null in Java"),
            "MessageDecoder.decodes(ByteBuffer, true) of stored_v1_ipv4.bin; per-message getters; msgId = MessageClientExt.getMsgId() (UNIQ_KEY), "
                + "offsetMsgId = MessageDecoder.createMessageId(storeHost, commitLogOffset)");
        return data;
    }

    /**
     * Stored-record writer mirroring MessageDecoder.encode (and the broker's MessageExtEncoder.encode) but with a
     * selectable MessageVersion: v1 writes MESSAGE_MAGIC_CODE and a 1-byte topic length, v2 MESSAGE_MAGIC_CODE_V2 and a
     * 2-byte topic length (MessageVersion.putTopicLength). Self-checked against MessageDecoder.encode for v1.
     */
    static byte[] encodeStored(MessageExt m, MessageVersion version) {
        byte[] body = m.getBody() == null ? new byte[0] : m.getBody();
        byte[] topic = m.getTopic().getBytes(StandardCharsets.UTF_8);
        byte[] props = MessageDecoder.messageProperties2String(m.getProperties()).getBytes(StandardCharsets.UTF_8);
        int sysFlag = m.getSysFlag();
        int bornLen = (sysFlag & MessageSysFlag.BORNHOST_V6_FLAG) == 0 ? 8 : 20;
        int storeLen = (sysFlag & MessageSysFlag.STOREHOSTADDRESS_V6_FLAG) == 0 ? 8 : 20;
        int size = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + bornLen + 8 + storeLen + 4 + 8
            + 4 + body.length + version.getTopicLengthSize() + topic.length + 2 + props.length;
        ByteBuffer bb = ByteBuffer.allocate(size);
        bb.putInt(size);
        bb.putInt(version.getMagicCode());
        bb.putInt(m.getBodyCRC());
        bb.putInt(m.getQueueId());
        bb.putInt(m.getFlag());
        bb.putLong(m.getQueueOffset());
        bb.putLong(m.getCommitLogOffset());
        bb.putInt(sysFlag);
        bb.putLong(m.getBornTimestamp());
        InetSocketAddress born = (InetSocketAddress) m.getBornHost();
        bb.put(born.getAddress().getAddress());
        bb.putInt(born.getPort());
        bb.putLong(m.getStoreTimestamp());
        InetSocketAddress store = (InetSocketAddress) m.getStoreHost();
        bb.put(store.getAddress().getAddress());
        bb.putInt(store.getPort());
        bb.putInt(m.getReconsumeTimes());
        bb.putLong(m.getPreparedTransactionOffset());
        bb.putInt(body.length);
        bb.put(body);
        version.putTopicLength(bb, topic.length);
        bb.put(topic);
        bb.putShort((short) props.length);
        bb.put(props);
        if (bb.hasRemaining()) {
            throw new IllegalStateException("size mismatch");
        }
        return bb.array();
    }

    static void storedV2Ipv6() throws Exception {
        StringBuilder longTopic = new StringBuilder("LongTopic-");
        while (longTopic.length() < 150) {
            longTopic.append("abcdefghij");
        }
        String[] topics = {"TopicV2Short", longTopic.substring(0, 150)};
        byte[][] bodies = {"ipv6 message one".getBytes(StandardCharsets.UTF_8), bodyOfSize(64, "v2")};
        List<MessageExt> msgs = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            MessageExt m = baseMsg(topics[i], bodies[i]);
            m.setTags("TagV6");
            m.setKeys("K" + i);
            m.setWaitStoreMsgOK(true);
            MessageAccessor.putProperty(m, MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
                "20010DB8000000000000000000000001" + "00002A9F000000000000000" + i);
            m.setFlag(0);
            m.setQueueId(3);
            m.setQueueOffset(500 + i);
            m.setSysFlag(0);
            m.setBornHostV6Flag();          // 0x10
            m.setStoreHostAddressV6Flag();  // 0x20
            m.setBornTimestamp(1732500000000L);
            m.setBornHost(addr("2001:db8::1", 40000 + i));
            m.setStoreTimestamp(1732500000500L);
            m.setStoreHost(addr("fe80::1234:5678:9abc:def0", 10911));
            m.setReconsumeTimes(0);
            m.setPreparedTransactionOffset(0);
            msgs.add(m);
        }
        List<byte[]> parts = new ArrayList<>();
        long commitLog = 0x20000;
        for (MessageExt m : msgs) {
            m.setCommitLogOffset(commitLog);
            // self-check: our writer with V1 == MessageDecoder.encode byte for byte (short topic only)
            if (m.getTopic().length() <= Byte.MAX_VALUE) {
                byte[] mine = encodeStored(m, MessageVersion.MESSAGE_VERSION_V1);
                byte[] java = MessageDecoder.encode(m, false);
                if (!Arrays.equals(mine, java)) {
                    throw new IllegalStateException("encodeStored(V1) differs from MessageDecoder.encode");
                }
            }
            byte[] rec = encodeStored(m, MessageVersion.MESSAGE_VERSION_V2);
            parts.add(rec);
            commitLog += rec.length;
        }
        byte[] data = concat(parts);
        List<MessageExt> decoded = javaDecode(data, 2); // proof: Java decodes both v2 records
        for (int i = 0; i < 2; i++) {
            if (!decoded.get(i).getTopic().equals(topics[i]) || !Arrays.equals(decoded.get(i).getBody(), bodies[i])) {
                throw new IllegalStateException("v2 round trip failed");
            }
        }
        writeBin("stored_v2_ipv6.bin", data,
            "2 records written by GoldenVectors.encodeStored(msg, MessageVersion.MESSAGE_VERSION_V2) (MessageDecoder.encode cannot write v2: it always "
                + "writes magic v1 + 1-byte topic length; the layout follows MessageDecoder.decode / store MessageExtEncoder.encode, and the same "
                + "writer with V1 is asserted byte-identical to MessageDecoder.encode); sysFlag 0x30 (IPv6 born+store host), born [2001:db8::1], "
                + "store [fe80::1234:5678:9abc:def0]:10911, 2nd topic is 150 bytes; verified by MessageDecoder.decodes");
        writeJson("stored_v2_ipv6.expect.json", expectFor(data, decoded,
                "magic 0xDAA320AB (v2): topic length is an int16; IPv6 hosts are 16 bytes + int32 port; host strings are InetAddress.getHostAddress()"),
            "MessageDecoder.decodes(ByteBuffer, true) of stored_v2_ipv6.bin");
    }

    static final byte[] COMPRESSIBLE = compressibleText(8192);

    static byte[] compressibleText(int n) {
        StringBuilder sb = new StringBuilder();
        int i = 0;
        while (sb.length() < n) {
            sb.append(String.format("line %04d: The quick brown fox jumps over the lazy dog. RocketMQ golden vector.\n", i++));
        }
        return sb.substring(0, n).getBytes(StandardCharsets.US_ASCII);
    }

    static void storedCompressed(String name, CompressionType type) throws Exception {
        byte[] raw = COMPRESSIBLE;
        Compressor compressor = CompressorFactory.getCompressor(type);
        // DefaultMQProducerImpl.tryToCompressMessage: compressor.compress(body, compressLevel=5)
        byte[] compressed = compressor.compress(raw, 5);
        // DefaultMQProducerImpl.sendKernelImpl: sysFlag |= COMPRESSED_FLAG; sysFlag |= compressType.getCompressionFlag()
        int sysFlag = 0;
        sysFlag |= MessageSysFlag.COMPRESSED_FLAG;
        sysFlag |= type.getCompressionFlag();

        MessageExt m = baseMsg("TopicCompressed", compressed); // broker stores the producer's (compressed) body as is
        m.setTags("TagZ");
        m.setKeys("KZ");
        m.setWaitStoreMsgOK(true);
        MessageAccessor.putProperty(m, MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "0A0000050D2C18B4AAC2665D7E50" + String.format("%04X", type.getValue()));
        m.setQueueId(0);
        m.setQueueOffset(7);
        m.setCommitLogOffset(0x30000L + type.getValue());
        m.setSysFlag(sysFlag);
        m.setBornTimestamp(1732500000000L);
        m.setBornHost(addr("10.0.0.5", 54321));
        m.setStoreTimestamp(1732500000001L);
        m.setStoreHost(addr("192.168.0.1", 10911));
        byte[] data = MessageDecoder.encode(m, false);

        // cross-check: MessageDecoder.encode(needCompress=true) on the raw body compresses identically
        MessageExt m2 = baseMsg("TopicCompressed", raw);
        MessageAccessor.setProperties(m2, m.getProperties());
        m2.setBodyCRC(m.getBodyCRC());
        m2.setQueueId(0);
        m2.setQueueOffset(7);
        m2.setCommitLogOffset(m.getCommitLogOffset());
        m2.setSysFlag(sysFlag);
        m2.setBornTimestamp(1732500000000L);
        m2.setBornHost(m.getBornHost());
        m2.setStoreTimestamp(1732500000001L);
        m2.setStoreHost(m.getStoreHost());
        boolean sameAsEncodeTrue = Arrays.equals(data, MessageDecoder.encode(m2, true));

        List<MessageExt> decoded = javaDecode(data, 1);
        if (!Arrays.equals(decoded.get(0).getBody(), raw)) {
            throw new IllegalStateException("decompression mismatch for " + type);
        }
        writeBin(name + ".bin", data, "MessageDecoder.encode(MessageExt, false) of one message whose body is "
            + "CompressorFactory.getCompressor(CompressionType." + type + ").compress(8192-byte text, 5), sysFlag = COMPRESSED_FLAG | "
            + "CompressionType." + type + ".getCompressionFlag() = 0x" + Integer.toHexString(sysFlag) + ", bodyCRC = UtilAll.crc32(compressed body)");
        Map<String, Object> e = expectFor(data, decoded,
            "body is the DECOMPRESSED body; sysFlag is as Java returns it after decompression (COMPRESSED_FLAG cleared)");
        e.put("compressionType", type.name());
        e.put("storedSysFlag", sysFlag);
        e.put("storedBodyCRC", UtilAll.crc32(compressed));
        e.put("storedBodyLength", compressed.length);
        e.put("storedBody", hex(compressed));
        e.put("encodeWithNeedCompressTrueIsIdentical", sameAsEncodeTrue);
        writeJson(name + ".expect.json", e, "MessageDecoder.decodes(ByteBuffer, true) of " + name + ".bin plus stored (compressed) body facts");
    }

    // ------------------------------------------------------------------ batch body

    static void batchBody() throws Exception {
        List<Message> list = new ArrayList<>();
        byte[][] bodies = {"batch body 1".getBytes(StandardCharsets.UTF_8), new byte[0], bodyOfSize(100, "batch")};
        int[] flags = {0, 1, 42};
        for (int i = 0; i < 3; i++) {
            Message m = new Message("TopicBatch", "TagB" + i, "BK" + i + " BK" + (i + 10), flags[i], bodies[i], true);
            MessageAccessor.putProperty(m, MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "0A00000500002A9F00000000000000B" + i);
            m.putUserProperty("idx", String.valueOf(i));
            list.add(m);
        }
        byte[] data = MessageDecoder.encodeMessages(list);
        writeBin("batch_body.bin", data, "MessageDecoder.encodeMessages(List<Message>) of 3 Messages (topic TopicBatch, tags TagB0..2, keys, "
            + "UNIQ_KEY, user property idx; flags 0/1/42; 2nd body empty)");
        List<Message> back = MessageDecoder.decodeMessages(ByteBuffer.wrap(data));
        Map<String, Object> e = obj();
        e.put("decodedBy", "MessageDecoder.decodeMessages(ByteBuffer.wrap(bytes))");
        e.put("totalBytes", data.length);
        List<Object> msgs = new ArrayList<>();
        for (Message m : back) {
            Map<String, Object> d = obj();
            d.put("flag", m.getFlag());
            d.put("body", hex(m.getBody()));
            d.put("properties", new TreeMap<>(m.getProperties()));
            d.put("propertiesString", MessageDecoder.messageProperties2String(m.getProperties()));
            msgs.add(d);
        }
        e.put("messages", msgs);
        writeJson("batch_body.expect.json", e, "MessageDecoder.decodeMessages of batch_body.bin: flag, body hex, properties "
            + "(propertiesString = messageProperties2String of the decoded map, i.e. same order as written)");
    }

    // ------------------------------------------------------------------ properties

    static void properties() throws Exception {
        Map<String, Object> root = obj();
        List<Object> enc = new ArrayList<>();

        Message m1 = new Message("T", "TagA", "KEY1 KEY2", new byte[0]);
        MessageAccessor.putProperty(m1, MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX, SEND_UNIQ_KEY);
        enc.add(encCase("Message(T, TagA, \"KEY1 KEY2\") + UNIQ_KEY (HashMap, as a producer builds it)", m1.getProperties()));

        Map<String, String> lhm = new LinkedHashMap<>();
        lhm.put("a", "1");
        lhm.put("b", "");
        lhm.put("nullValue", null);
        lhm.put("unicode", "中文");
        lhm.put("space key", "v w");
        enc.add(encCase("LinkedHashMap with empty value and a null value (null skipped, empty kept)", lhm));

        enc.add(encCase("empty map", new HashMap<>()));
        Map<String, Object> nullCase = obj();
        nullCase.put("description", "null map");
        nullCase.put("map", null);
        nullCase.put("text", MessageDecoder.messageProperties2String(null));
        nullCase.put("hex", hex(MessageDecoder.messageProperties2String(null).getBytes(StandardCharsets.UTF_8)));
        enc.add(nullCase);
        root.put("messageProperties2String", enc);

        List<Object> dec = new ArrayList<>();
        String[][] inputs = {
            {"empty string", ""},
            {"single pair with trailing separator", "a\u0001b\u0002"},
            {"single pair without trailing separator", "a\u0001b"},
            {"trailing extra separators", "a\u0001b\u0002\u0002\u0002"},
            {"leading separators", "\u0002\u0002a\u0001b\u0002"},
            {"segment without \\u0001 then a valid pair", "abcd\u0002k\u0001v\u0002"},
            {"key without value (k\\u0001) among pairs", "key\u0001\u0002x\u0001y\u0002"},
            {"empty key (\\u0001v)", "\u0001value\u0002x\u0001y\u0002"},
            {"short segment < 3 chars (k\\u0001 and ab)", "k\u0001\u0002ab\u0002x\u0001y\u0002"},
            {"value containing \\u0001", "k\u0001v\u0001w\u0002"},
            {"duplicate key (last wins)", "k\u0001first\u0002k\u0001second\u0002"},
            {"one-char key and value (exactly 3 chars)", "a\u0001b"},
            {"unicode", "TAGS\u0001标签\u0002KEYS\u0001k1 k2\u0002"},
            {"only separators", "\u0001\u0002\u0001\u0002"},
            {"segment without \\u0001 at end", "x\u0001y\u0002dangling"},
        };
        for (String[] in : inputs) {
            Map<String, Object> c = obj();
            c.put("description", in[0]);
            c.put("text", in[1]);
            c.put("hex", hex(in[1].getBytes(StandardCharsets.UTF_8)));
            c.put("result", new TreeMap<>(MessageDecoder.string2messageProperties(in[1])));
            dec.add(c);
        }
        Map<String, Object> nullIn = obj();
        nullIn.put("description", "null input");
        nullIn.put("text", null);
        nullIn.put("hex", null);
        nullIn.put("result", new TreeMap<>(MessageDecoder.string2messageProperties(null)));
        dec.add(nullIn);
        root.put("string2messageProperties", dec);
        writeJson("properties.expect.json", root, "MessageDecoder.messageProperties2String(Map) (text + UTF-8 hex, entries listed in the "
            + "map's iteration order) and MessageDecoder.string2messageProperties(String) results (sorted) for tricky inputs");
    }

    static Map<String, Object> encCase(String desc, Map<String, String> map) {
        Map<String, Object> c = obj();
        c.put("description", desc);
        List<Object> entries = new ArrayList<>();
        for (Map.Entry<String, String> e : map.entrySet()) {
            entries.add(Arrays.asList(e.getKey(), e.getValue()));
        }
        c.put("entriesInIterationOrder", entries);
        String s = MessageDecoder.messageProperties2String(map);
        c.put("text", s);
        c.put("hex", hex(s.getBytes(StandardCharsets.UTF_8)));
        return c;
    }

    // ------------------------------------------------------------------ message ids

    static void messageIds() throws Exception {
        Map<String, Object> root = obj();
        List<Object> offsetIds = new ArrayList<>();
        Object[][] cases = {
            {"192.168.0.1", 10911, 0x1234L},
            {"2001:db8::1", 10911, 0x1234L},
            {"10.0.0.2", 30911, 0x7FFFFFFFFFFFFFFFL},
        };
        for (Object[] c : cases) {
            InetSocketAddress a = addr((String) c[0], (Integer) c[1]);
            String id = MessageDecoder.createMessageId(a, (Long) c[2]);
            MessageId back = MessageDecoder.decodeMessageId(id);
            Map<String, Object> d = obj();
            d.put("storeHost", c[0] + ":" + c[1]);
            d.put("commitLogOffset", c[2]);
            d.put("msgId", id);
            d.put("decodeMessageId.address", hostStr(back.getAddress()));
            d.put("decodeMessageId.offset", back.getOffset());
            offsetIds.add(d);
        }
        root.put("createMessageId", offsetIds);

        // the ByteBuffer variant used by MessageDecoder.decode
        MessageExt m = new MessageExt();
        m.setStoreHost(addr("192.168.0.1", 10911));
        String viaBuffers = MessageDecoder.createMessageId(ByteBuffer.allocate(16), m.getStoreHostBytes(), 0x1234L);
        root.put("createMessageId(ByteBuffer,ByteBuffer,long) for 192.168.0.1:10911/0x1234", viaBuffers);

        List<Object> uniq = new ArrayList<>();
        String sample = MessageClientIDSetter.createUniqID();
        String sample2 = MessageClientIDSetter.createUniqID();
        for (String id : new String[] {sample, sample2, "C0A8000112345678ABCD00000BB80001", SEND_UNIQ_KEY}) {
            Map<String, Object> d = obj();
            d.put("id", id);
            d.put("length", id.length());
            d.put("getIPStrFromID", MessageClientIDSetter.getIPStrFromID(id));
            d.put("getPidFromID", MessageClientIDSetter.getPidFromID(id));
            Date t = MessageClientIDSetter.getNearlyTimeFromID(id);
            d.put("getNearlyTimeFromID.epochMillis", t.getTime());
            byte[] b = UtilAll.string2bytes(id);
            int ipLen = b.length == 28 ? 16 : 4;
            ByteBuffer bb = ByteBuffer.wrap(b);
            d.put("field.ip", hex(Arrays.copyOfRange(b, 0, ipLen)));
            d.put("field.pid(u16)", bb.getShort(ipLen) & 0xFFFF);
            d.put("field.classLoaderHash(i32)", bb.getInt(ipLen + 2));
            d.put("field.msSinceMonthStart(i32)", bb.getInt(ipLen + 6));
            d.put("field.counter(u16)", bb.getShort(ipLen + 10) & 0xFFFF);
            uniq.add(d);
        }
        Map<String, Object> u = obj();
        u.put("note", "first two are MessageClientIDSetter.createUniqID() samples from this run; the others are fixed ids. "
            + "getNearlyTimeFromID depends on the current time (it picks this month, or the previous one if the result would be >= now) "
            + "and on the default time zone, set to UTC by GoldenVectors; generatedAtEpochMillis is when these were computed.");
        u.put("timeZone", TimeZone.getDefault().getID());
        u.put("generatedAtEpochMillis", System.currentTimeMillis());
        u.put("ids", uniq);
        root.put("uniqIds", u);
        writeJson("message_ids.expect.json", root, "MessageDecoder.createMessageId(SocketAddress,long) / decodeMessageId; "
            + "MessageClientIDSetter.createUniqID(), getIPStrFromID, getPidFromID, getNearlyTimeFromID (TZ=UTC)");
    }

    // ------------------------------------------------------------------ tag hashes

    static void tagHashes() throws Exception {
        StringBuilder lg = new StringBuilder();
        for (int i = 0; i < 20; i++) {
            lg.append("LongTag").append(i).append('-');
        }
        String[] tags = {"TagA", "TagB", "*", "", "tag-中文", "a||b", lg.toString(), "😀emoji"};
        List<Object> list = new ArrayList<>();
        for (String t : tags) {
            Map<String, Object> d = obj();
            d.put("tag", t);
            d.put("utf8Hex", hex(t.getBytes(StandardCharsets.UTF_8)));
            d.put("hashCode", t.hashCode());
            list.add(d);
        }
        writeJson("tag_hashes.expect.json", list, "java.lang.String.hashCode() (UTF-16 code units, s[0]*31^(n-1)+..., signed int32)");
    }

    // ------------------------------------------------------------------ JSON bodies

    static TopicRouteData routeData() {
        TopicRouteData r = new TopicRouteData();
        List<QueueData> qds = new ArrayList<>();
        for (String b : new String[] {"broker-a", "broker-b"}) {
            QueueData q = new QueueData();
            q.setBrokerName(b);
            q.setReadQueueNums(4);
            q.setWriteQueueNums(4);
            q.setPerm(6);
            q.setTopicSysFlag(0);
            qds.add(q);
        }
        r.setQueueDatas(qds);
        List<BrokerData> bds = new ArrayList<>();
        HashMap<Long, String> a = new HashMap<>();
        a.put(0L, "10.0.0.1:10911");
        a.put(1L, "10.0.0.2:10911");
        bds.add(new BrokerData("DefaultCluster", "broker-a", a));
        HashMap<Long, String> b = new HashMap<>();
        b.put(0L, "10.0.0.3:10911");
        b.put(1L, "10.0.0.4:10911");
        BrokerData bb = new BrokerData("DefaultCluster", "broker-b", b);
        bb.setZoneName("zone-中");
        bds.add(bb);
        r.setBrokerDatas(bds);
        r.setFilterServerTable(new HashMap<>());
        r.setOrderTopicConf(null);
        return r;
    }

    static MessageQueue mq(String topic, String broker, int id) {
        return new MessageQueue(topic, broker, id);
    }

    static SubscriptionData sub(String topic, String subString, long subVersion) {
        SubscriptionData s = new SubscriptionData(topic, subString);
        s.setExpressionType(ExpressionType.TAG);
        s.setSubVersion(subVersion);
        if (!SubscriptionData.SUB_ALL.equals(subString)) {
            // as FilterAPI.buildSubscriptionData: split on "||", trim, add tag and its hashCode
            for (String t : subString.split("\\|\\|")) {
                String tag = t.trim();
                if (!tag.isEmpty()) {
                    s.getTagsSet().add(tag);
                    s.getCodeSet().add(tag.hashCode());
                }
            }
        }
        return s;
    }

    static void jsonBodies() throws Exception {
        TopicRouteData r = routeData();
        writeText("route_nonstandard.json", new String(r.encode(), StandardCharsets.UTF_8),
            "TopicRouteData.encode() (RemotingSerializable.encode -> JSON.toJSONString(this)) - non-standard {0:\"addr\"} keys; 2 brokers, "
                + "brokerAddrs {0,1}, 2 queueDatas, orderTopicConf null, filterServerTable {}, broker-b zoneName \"zone-中\"");
        writeText("route_standard.json", new String(r.encode(SerializerFeature.BrowserCompatible, SerializerFeature.QuoteFieldNames,
                SerializerFeature.SkipTransientField, SerializerFeature.MapSortField), StandardCharsets.UTF_8),
            "same TopicRouteData via topicRouteData.encode(BrowserCompatible, QuoteFieldNames, SkipTransientField, MapSortField) "
                + "exactly as namesrv 5.3.3 ClientRequestProcessor.getRouteInfoByTopic does for version >= V4_9_4 or acceptStandardJsonOnly");

        HeartbeatData hb = new HeartbeatData();
        hb.setClientID("10.0.0.5@12345#93284123");
        ProducerData pd = new ProducerData();
        pd.setGroupName("PG_TEST");
        hb.getProducerDataSet().add(pd);
        ConsumerData cd = new ConsumerData();
        cd.setGroupName("CG_TEST");
        cd.setConsumeType(ConsumeType.CONSUME_PASSIVELY);
        cd.setMessageModel(MessageModel.CLUSTERING);
        cd.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET);
        cd.setUnitMode(false);
        cd.getSubscriptionDataSet().add(sub("TopicTest", "TagA || TagB", 1732500000000L));
        cd.getSubscriptionDataSet().add(sub("%RETRY%CG_TEST", "*", 1732500000001L));
        hb.getConsumerDataSet().add(cd);
        writeText("heartbeat.json", new String(hb.encode(), StandardCharsets.UTF_8),
            "HeartbeatData.encode(): clientID, producer group PG_TEST, consumer CG_TEST (PASSIVELY, CLUSTERING, LAST_OFFSET) with "
                + "subscriptions TopicTest \"TagA || TagB\" (tagsSet/codeSet as FilterAPI builds them) and %RETRY%CG_TEST \"*\"");

        GetConsumerListByGroupResponseBody ids = new GetConsumerListByGroupResponseBody();
        ids.setConsumerIdList(Arrays.asList("10.0.0.5@12345#93284123", "10.0.0.6@23456#12345678"));
        writeText("consumer_id_list.json", new String(ids.encode(), StandardCharsets.UTF_8),
            "GetConsumerListByGroupResponseBody.encode() with 2 client ids");

        LockBatchRequestBody lreq = new LockBatchRequestBody();
        lreq.setConsumerGroup("CG_TEST");
        lreq.setClientId("10.0.0.5@12345#93284123");
        lreq.setOnlyThisBroker(false);
        Set<MessageQueue> mqs = new HashSet<>();
        mqs.add(mq("TopicTest", "broker-a", 0));
        mqs.add(mq("TopicTest", "broker-a", 1));
        lreq.setMqSet(mqs);
        writeText("lock_batch_request.json", new String(lreq.encode(), StandardCharsets.UTF_8),
            "LockBatchRequestBody.encode(): CG_TEST, clientId, onlyThisBroker false, mqSet (HashSet) of 2 queues");

        LockBatchResponseBody lresp = new LockBatchResponseBody();
        lresp.getLockOKMQSet().add(mq("TopicTest", "broker-a", 1));
        writeText("lock_batch_response.json", new String(lresp.encode(), StandardCharsets.UTF_8),
            "LockBatchResponseBody.encode(): lockOKMQSet with 1 queue");

        ResetOffsetBody rob = new ResetOffsetBody();
        Map<MessageQueue, Long> ot = new HashMap<>();
        ot.put(mq("TopicTest", "broker-a", 0), 42L);
        ot.put(mq("TopicTest", "broker-a", 1), 1000000000000L);
        rob.setOffsetTable(ot);
        writeText("reset_offset_body.json", new String(rob.encode(), StandardCharsets.UTF_8),
            "ResetOffsetBody.encode(): offsetTable HashMap<MessageQueue,Long> with 2 queues (object map keys)");

        GetConsumerStatusBody gcs = new GetConsumerStatusBody();
        Map<MessageQueue, Long> mqt = new HashMap<>();
        mqt.put(mq("TopicTest", "broker-a", 0), 10L);
        mqt.put(mq("TopicTest", "broker-b", 3), 20L);
        gcs.setMessageQueueTable(mqt);
        writeText("consumer_status_body.json", new String(gcs.encode(), StandardCharsets.UTF_8),
            "GetConsumerStatusBody.encode(): messageQueueTable with 2 queues, consumerTable empty (as the client's getConsumeStatus returns it)");

        ConsumerRunningInfo cri = new ConsumerRunningInfo();
        Properties p = new Properties();
        p.put(ConsumerRunningInfo.PROP_CONSUME_TYPE, ConsumeType.CONSUME_PASSIVELY.name());
        p.put(ConsumerRunningInfo.PROP_CONSUME_ORDERLY, "false");
        p.put(ConsumerRunningInfo.PROP_CONSUMER_START_TIMESTAMP, "1732500000000");
        p.put(ConsumerRunningInfo.PROP_NAMESERVER_ADDR, "127.0.0.1:9876;");
        p.put(ConsumerRunningInfo.PROP_THREADPOOL_CORE_SIZE, "20");
        p.put(ConsumerRunningInfo.PROP_CLIENT_VERSION, "V5_3_3");
        p.put("consumerGroup", "CG_TEST");
        cri.setProperties(p);
        TreeSet<SubscriptionData> subs = new TreeSet<>();
        subs.add(sub("TopicTest", "TagA", 1732500000000L));
        cri.setSubscriptionSet(subs);
        TreeMap<MessageQueue, ProcessQueueInfo> mqTable = new TreeMap<>();
        for (int i = 0; i < 2; i++) {
            ProcessQueueInfo pq = new ProcessQueueInfo();
            pq.setCommitOffset(100 + i);
            pq.setCachedMsgMinOffset(101 + i);
            pq.setCachedMsgMaxOffset(110 + i);
            pq.setCachedMsgCount(10);
            pq.setCachedMsgSizeInMiB(1);
            pq.setTransactionMsgMinOffset(0);
            pq.setTransactionMsgMaxOffset(0);
            pq.setTransactionMsgCount(0);
            pq.setLocked(i == 1);
            pq.setTryUnlockTimes(0);
            pq.setLastLockTimestamp(i == 1 ? 1732500000200L : 0);
            pq.setDroped(false);
            pq.setLastPullTimestamp(1732500000300L);
            pq.setLastConsumeTimestamp(1732500000400L);
            mqTable.put(mq("TopicTest", "broker-a", i), pq);
        }
        cri.setMqTable(mqTable);
        TreeMap<String, ConsumeStatus> st = new TreeMap<>();
        ConsumeStatus cs = new ConsumeStatus();
        cs.setPullRT(1.5);
        cs.setPullTPS(20.25);
        cs.setConsumeRT(3.0);
        cs.setConsumeOKTPS(19.5);
        cs.setConsumeFailedTPS(0.0);
        cs.setConsumeFailedMsgs(2);
        st.put("TopicTest", cs);
        cri.setStatusTable(st);
        writeText("consumer_running_info.json", new String(cri.encode(), StandardCharsets.UTF_8),
            "ConsumerRunningInfo.encode(): properties (java.util.Properties), 1 subscription, mqTable TreeMap of 2 queues -> ProcessQueueInfo, "
                + "statusTable of 1 topic -> ConsumeStatus, empty mqPopTable/userConsumerInfo, jstack null");

        ConsumeMessageDirectlyResult cmr = new ConsumeMessageDirectlyResult();
        cmr.setOrder(false);
        cmr.setAutoCommit(true);
        cmr.setConsumeResult(CMResult.CR_SUCCESS);
        cmr.setRemark("consume ok");
        cmr.setSpentTimeMills(12);
        writeText("consume_directly_result.json", new String(cmr.encode(), StandardCharsets.UTF_8),
            "ConsumeMessageDirectlyResult.encode(): order false, autoCommit true, CR_SUCCESS, remark, spentTimeMills 12");
    }

    // ------------------------------------------------------------------ README

    static void writeReadme() throws IOException {
        StringBuilder sb = new StringBuilder();
        sb.append("# Golden vectors from Apache RocketMQ 5.3.3 (Java)\n\n");
        sb.append("Generated by `tests/java/golden` (`org.apache.rocketmq.golden.GoldenVectors`) using "
            + "`org.apache.rocketmq:rocketmq-remoting:5.3.3` and `rocketmq-common:5.3.3` (fastjson 1.2.83, zstd-jni 1.5.2-2, lz4-java 1.8.0). "
            + "Regenerate with the command in `tests/java/golden/README.md`. Do not edit by hand.\n\n");
        sb.append("Conventions: `.bin` = raw bytes; `.json` = exact bytes Java wrote; `.expect.json` = what Java decodes (pretty-printed by "
            + "fastjson, hex lower-case, maps sorted by key unless noted). Frames include the 4-byte length prefix.\n\n");
        for (Map.Entry<String, String> e : readme.entrySet()) {
            sb.append("- `").append(e.getKey()).append("`: ").append(e.getValue()).append('\n');
        }
        Files.write(out.resolve("README.md"), sb.toString().getBytes(StandardCharsets.UTF_8));
    }
}
