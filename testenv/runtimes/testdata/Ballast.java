import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The suite's memory growth for the JVM: a daemon thread that waits for
 * $BALLAST_DIR/ballast.go, then allocates (and touches) 1 MiB arrays at
 * $BALLAST_RATE MiB/s until $BALLAST_DIR/ballast.stop exists, and holds
 * them. The first argument names a class whose main runs in the same JVM
 * (the example), with the remaining arguments.
 */
public final class Ballast {
    private static final List<byte[]> held = new ArrayList<>();

    public static void main(String[] args) throws Exception {
        Thread t = new Thread(Ballast::grow, "ballast");
        t.setDaemon(true);
        t.start();
        if (args.length == 0) {
            t.join();
            return;
        }
        Class.forName(args[0]).getMethod("main", String[].class)
                .invoke(null, (Object) Arrays.copyOfRange(args, 1, args.length));
    }

    private static void grow() {
        try {
            Path dir = Path.of(System.getenv().getOrDefault("BALLAST_DIR", "/tmp"));
            double rate = Double.parseDouble(System.getenv().getOrDefault("BALLAST_RATE", "20"));
            while (!Files.exists(dir.resolve("ballast.go"))) {
                Thread.sleep(100);
            }
            System.out.println("ballast: growing at " + rate + " MiB/s");
            long pause = (long) (1000 / rate);
            while (!Files.exists(dir.resolve("ballast.stop"))) {
                byte[] b = new byte[1 << 20];
                Arrays.fill(b, (byte) 1);
                held.add(b);
                Thread.sleep(pause);
            }
            System.out.println("ballast: holding " + held.size() + " MiB");
        } catch (Exception e) {
            e.printStackTrace();
        }
    }
}
