// The Java side of the consumer benchmark: a DefaultMQPushConsumer (rocketmq-client
// from Maven Central) of a new group drains <count> messages from the start of
// <topic> with a no-op concurrent listener, at the client's default settings.
// Prints one JSON line: messages consumed, seconds from start to the last one,
// the process CPU seconds over that time (OperatingSystemMXBean.getProcessCpuTime)
// and the peak resident set (VmHWM from /proc/self/status), in KiB.
//
// Usage: BenchConsumer <namesrv> <topic> <group> <count> <timeoutSeconds>

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;

public class BenchConsumer {
    public static void main(String[] args) throws Exception {
        String namesrv = args[0];
        String topic = args[1];
        String group = args[2];
        long count = Long.parseLong(args[3]);
        int timeout = Integer.parseInt(args[4]);
        com.sun.management.OperatingSystemMXBean os =
            (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();

        AtomicLong consumed = new AtomicLong();
        CountDownLatch done = new CountDownLatch(1);
        long[] lastAt = new long[1];
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(group);
        consumer.setNamesrvAddr(namesrv);
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            if (consumed.addAndGet(msgs.size()) >= count) {
                synchronized (lastAt) {
                    if (lastAt[0] == 0) {
                        lastAt[0] = System.nanoTime();
                    }
                }
                done.countDown();
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
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
