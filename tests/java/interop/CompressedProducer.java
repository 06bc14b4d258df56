// Sends messages with the real Java client (rocketmq-client from Maven Central)
// using one compression type, and writes what it sent as JSON lines, so that the
// Rust interop test can pull them back and compare byte for byte.
//
// Usage: CompressedProducer <namesrv> <topic> <ZLIB|LZ4|ZSTD> <count> <manifest>
// Compiled and run by the test harness against the cached RocketMQ classpath.

import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.Map;

import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.compression.CompressionType;
import org.apache.rocketmq.common.message.Message;

public class CompressedProducer {
    public static void main(String[] args) throws Exception {
        String namesrv = args[0];
        String topic = args[1];
        CompressionType type = CompressionType.valueOf(args[2]);
        int count = Integer.parseInt(args[3]);
        String manifest = args[4];

        DefaultMQProducer producer = new DefaultMQProducer("interop-producer-" + args[2]);
        producer.setNamesrvAddr(namesrv);
        producer.setCompressType(type);
        producer.setCompressMsgBodyOverHowmuch(4096);
        producer.setSendMsgTimeout(10000);
        producer.start();
        try (PrintWriter out = new PrintWriter(manifest, StandardCharsets.UTF_8)) {
            for (int i = 0; i < count; i++) {
                // Alternate compressible bodies over the threshold with small ones.
                int len = (i % 2 == 0) ? 6000 + 100 * i : 10 + i;
                StringBuilder body = new StringBuilder();
                while (body.length() < len) {
                    body.append("java ").append(args[2]).append(" message ").append(i).append(' ');
                }
                byte[] bytes = body.substring(0, len).getBytes(StandardCharsets.UTF_8);
                Message msg = new Message(topic, "Tag" + (i % 3), "key-" + i, bytes);
                msg.putUserProperty("index", Integer.toString(i));
                msg.putUserProperty("compression", args[2]);
                SendResult result = producer.send(msg);
                if (result.getSendStatus() != SendStatus.SEND_OK) {
                    throw new IllegalStateException("send " + i + ": " + result);
                }
                StringBuilder line = new StringBuilder();
                line.append("{\"msgId\":\"").append(result.getMsgId()).append('"');
                line.append(",\"queueId\":").append(result.getMessageQueue().getQueueId());
                line.append(",\"queueOffset\":").append(result.getQueueOffset());
                line.append(",\"body\":\"").append(hex(bytes)).append('"');
                line.append(",\"properties\":{");
                boolean first = true;
                for (Map.Entry<String, String> e : msg.getProperties().entrySet()) {
                    if (!first) {
                        line.append(',');
                    }
                    first = false;
                    line.append('"').append(e.getKey()).append("\":\"").append(e.getValue()).append('"');
                }
                line.append("}}");
                out.println(line);
            }
        } finally {
            producer.shutdown();
        }
    }

    private static String hex(byte[] bytes) {
        StringBuilder s = new StringBuilder(bytes.length * 2);
        for (byte b : bytes) {
            s.append(Character.forDigit((b >> 4) & 0xF, 16)).append(Character.forDigit(b & 0xF, 16));
        }
        return s.toString();
    }
}
