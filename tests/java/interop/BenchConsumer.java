// The Java side of the consumer benchmarks: a DefaultMQPushConsumer (rocketmq-client
// from Maven Central) of a new group drains <count> messages from the start of
// <topic> with a no-op listener, concurrent (MessageListenerConcurrently, the
// default) or orderly (MessageListenerOrderly, with the word "orderly" last).
// Its settings are the client's defaults, spelled out because ours are compared
// with them: 1 message per listener call, 20 consume threads, pulls of 32.
// Prints one JSON line: messages consumed, seconds from start to the last one,
// the process CPU seconds over that time (OperatingSystemMXBean.getProcessCpuTime)
// and the peak resident set (VmHWM from /proc/self/status), in KiB.
//
// Usage: BenchConsumer <namesrv> <topic> <group> <count> <timeoutSeconds> [concurrent|orderly]

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.ConsumeOrderlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.consumer.listener.MessageListenerOrderly;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;

public class BenchConsumer {
    public static void main(String[] args) throws Exception {
        String namesrv = args[0];
        String topic = args[1];
        String group = args[2];
        long count = Long.parseLong(args[3]);
        int timeout = Integer.parseInt(args[4]);
        boolean orderly = args.length > 5 && args[5].equals("orderly");
        com.sun.management.OperatingSystemMXBean os =
            (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();

        AtomicLong consumed = new AtomicLong();
        CountDownLatch done = new CountDownLatch(1);
        long[] lastAt = new long[1];
        // Counts a listener call's messages; notes the time the last one arrived.
        java.util.function.IntConsumer note = n -> {
            if (consumed.addAndGet(n) >= count) {
                synchronized (lastAt) {
                    if (lastAt[0] == 0) {
                        lastAt[0] = System.nanoTime();
                    }
                }
                done.countDown();
            }
        };
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(group);
        consumer.setNamesrvAddr(namesrv);
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.setConsumeMessageBatchMaxSize(1);
        consumer.setConsumeThreadMin(20);
        consumer.setConsumeThreadMax(20);
        consumer.setPullBatchSize(32);
        consumer.subscribe(topic, "*");
        if (orderly) {
            consumer.registerMessageListener((MessageListenerOrderly) (msgs, ctx) -> {
                note.accept(msgs.size());
                return ConsumeOrderlyStatus.SUCCESS;
            });
        } else {
            consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
                note.accept(msgs.size());
                return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
            });
        }
        long cpu0 = os.getProcessCpuTime();
        long t0 = System.nanoTime();
        consumer.start();
        boolean all = done.await(timeout, TimeUnit.SECONDS);
        long cpu1 = os.getProcessCpuTime();
        long t1;
        synchronized (lastAt) {
            t1 = lastAt[0] == 0 ? System.nanoTime() : lastAt[0];
        }
        long hwm = 0;
        for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
            if (line.startsWith("VmHWM:")) {
                hwm = Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        consumer.shutdown();
        System.out.printf("{\"consumed\":%d,\"all\":%b,\"seconds\":%.3f,\"cpuSeconds\":%.3f,\"peakRssKib\":%d}%n",
            consumed.get(), all, (t1 - t0) / 1e9, (cpu1 - cpu0) / 1e9, hwm);
        System.exit(0);
    }
}
