// Consumes a topic with the real Java push consumer (rocketmq-client from Maven
// Central) and writes every message it got as JSON lines, so that the Rust
// interop test can check what our producer sent arrived intact.
//
// Usage: PushConsumer <namesrv> <topic> <group> <count> <timeoutSeconds> <manifest>
// Exits 0 once <count> distinct messages arrived, 2 on timeout.

import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.MessageExt;

public class PushConsumer {
    public static void main(String[] args) throws Exception {
        String namesrv = args[0];
        String topic = args[1];
        String group = args[2];
        int count = Integer.parseInt(args[3]);
        int timeout = Integer.parseInt(args[4]);
        String manifest = args[5];

        Map<String, String> lines = new ConcurrentHashMap<>();
        CountDownLatch done = new CountDownLatch(count);
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(group);
        consumer.setNamesrvAddr(namesrv);
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, context) -> {
            for (MessageExt m : msgs) {
                StringBuilder line = new StringBuilder();
                line.append("{\"msgId\":\"").append(m.getMsgId()).append('"');
                line.append(",\"sysFlag\":").append(m.getSysFlag());
                line.append(",\"body\":\"").append(hex(m.getBody())).append('"');
                line.append(",\"properties\":{");
                boolean first = true;
                for (Map.Entry<String, String> e : m.getProperties().entrySet()) {
                    if (!first) {
                        line.append(',');
                    }
                    first = false;
                    line.append('"').append(escape(e.getKey())).append("\":\"").append(escape(e.getValue())).append('"');
                }
                line.append("}}");
                if (lines.putIfAbsent(m.getMsgId(), line.toString()) == null) {
                    done.countDown();
                }
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        consumer.start();
        boolean all = done.await(timeout, TimeUnit.SECONDS);
        consumer.shutdown();
        try (PrintWriter out = new PrintWriter(manifest, StandardCharsets.UTF_8)) {
            for (String line : lines.values()) {
                out.println(line);
            }
        }
        System.exit(all ? 0 : 2);
    }

    private static String escape(String s) {
        StringBuilder b = new StringBuilder();
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.toString();
    }

    private static String hex(byte[] bytes) {
        StringBuilder s = new StringBuilder(bytes == null ? 0 : bytes.length * 2);
        if (bytes != null) {
            for (byte b : bytes) {
                s.append(Character.forDigit((b >> 4) & 0xF, 16)).append(Character.forDigit(b & 0xF, 16));
            }
        }
        return s.toString();
    }
}
