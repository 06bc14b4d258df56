// The Java side of the producer benchmark: <threads> threads each send <size>-byte
// messages synchronously with the real Java client (rocketmq-client from Maven
// Central), for <warmup> seconds unmeasured and then <seconds> measured. Prints
// one JSON line: messages sent, seconds, and the process CPU seconds spent in the
// measured phase (OperatingSystemMXBean.getProcessCpuTime).
//
// Usage: BenchProducer <namesrv> <topic> <threads> <size> <warmup> <seconds>

import java.lang.management.ManagementFactory;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.common.message.Message;

public class BenchProducer {
    public static void main(String[] args) throws Exception {
        String namesrv = args[0];
        String topic = args[1];
        int threads = Integer.parseInt(args[2]);
        int size = Integer.parseInt(args[3]);
        int warmup = Integer.parseInt(args[4]);
        int seconds = Integer.parseInt(args[5]);
        com.sun.management.OperatingSystemMXBean os =
            (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();

        DefaultMQProducer producer = new DefaultMQProducer("bench-java-producer");
        producer.setNamesrvAddr(namesrv);
        producer.setCompressMsgBodyOverHowmuch(Integer.MAX_VALUE);
        producer.start();
        byte[] body = new byte[size];
        java.util.Arrays.fill(body, (byte) 'j');
        AtomicBoolean stop = new AtomicBoolean(false);
        AtomicLong sent = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        Thread[] workers = new Thread[threads];
        for (int t = 0; t < threads; t++) {
            workers[t] = new Thread(() -> {
                while (!stop.get()) {
                    try {
                        producer.send(new Message(topic, "bench", body));
                        sent.incrementAndGet();
                    } catch (Exception e) {
                        failed.incrementAndGet();
                    }
                }
            });
            workers[t].start();
        }
        Thread.sleep(warmup * 1000L);
        long sent0 = sent.get();
        long cpu0 = os.getProcessCpuTime();
        long t0 = System.nanoTime();
        Thread.sleep(seconds * 1000L);
        long sent1 = sent.get();
        long cpu1 = os.getProcessCpuTime();
        long t1 = System.nanoTime();
        stop.set(true);
        for (Thread w : workers) {
            w.join();
        }
        producer.shutdown();
        System.out.printf("{\"sent\":%d,\"failed\":%d,\"seconds\":%.3f,\"cpuSeconds\":%.3f}%n",
            sent1 - sent0, failed.get(), (t1 - t0) / 1e9, (cpu1 - cpu0) / 1e9);
        System.exit(0);
    }
}
