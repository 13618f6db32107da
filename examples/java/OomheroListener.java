import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Receives oomhero's HTTP notifications in a JVM.
 *
 * <p>The application container declares OOMHERO_NOTIFY_URL=http://127.0.0.1:8080/oomhero
 * (the pod shares one network namespace); oomhero then POSTs a small JSON object
 * ({"container":..,"level":"warning"|"critical",..,"percent":..,..}) on each decision
 * that would send a signal. Signals are the wrong tool for a JVM: HotSpot uses SIGUSR2
 * itself (thread suspend/resume) and a stray one crashes or confuses it, and SIGUSR1's
 * default action ends the process. See README.md.
 *
 * <p>On warning the example drops its cache; on critical it also stops caching.
 * Run: {@code javac -d out OomheroListener.java && java -cp out OomheroListener}.
 */
public final class OomheroListener {
    private static final Map<Integer, byte[]> cache = new ConcurrentHashMap<>();
    private static volatile boolean caching = true;
    private static final Pattern LEVEL = Pattern.compile("\"level\"\\s*:\\s*\"([a-z]+)\"");
    private static final Pattern PERCENT = Pattern.compile("\"percent\"\\s*:\\s*([0-9.eE+-]+)");

    public static void main(String[] args) throws IOException {
        int port = Integer.parseInt(System.getenv().getOrDefault("PORT", "8080"));
        HttpServer server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 0);
        server.createContext("/oomhero", ex -> {
            try (ex) {
                if (!"POST".equals(ex.getRequestMethod())) {
                    ex.sendResponseHeaders(405, -1);
                    return;
                }
                String body;
                try (InputStream in = ex.getRequestBody()) {
                    body = new String(in.readNBytes(64 * 1024), StandardCharsets.UTF_8);
                }
                String level = find(LEVEL, body);
                System.out.println("oomhero: level=" + level + " percent=" + find(PERCENT, body));
                onLevel(level);
                ex.sendResponseHeaders(204, -1);
            }
        });
        server.start();
        System.out.println("example: listening on 127.0.0.1:" + port + "/oomhero");
        for (int i = 0; ; i++) { // the "work": a cache that grows slowly
            if (caching) {
                cache.put(i, new byte[1024]);
            }
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private static void onLevel(String level) {
        switch (level) {
            case "warning" -> {
                int n = cache.size();
                cache.clear();
                System.out.println("example: warning: dropped " + n + " cache entries");
            }
            case "critical" -> {
                caching = false;
                cache.clear();
                System.out.println("example: critical: cache dropped, caching stopped");
            }
            default -> System.out.println("example: level " + level + " ignored");
        }
    }

    private static String find(Pattern p, String s) {
        Matcher m = p.matcher(s);
        return m.find() ? m.group(1) : "";
    }
}
