// Runs the Java compatibility tests named on the command line (default: all) against the Kafka
// listener at $KAFKA_BOOTSTRAP; prints one PASS/FAIL line per test and exits 0 only if all passed.
package spate.compat;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public final class Main {
  private Main() {}

  interface Test {
    void run(String bootstrap) throws Exception;
  }

  public static void main(String[] arguments) {
    Map<String, Test> tests = new LinkedHashMap<>();
    tests.put("basic", Basic::run);
    tests.put("native-reads-java", CrossProtocol::nativeReadsJava);
    tests.put("java-reads-native", CrossProtocol::javaReadsNative);
    tests.put("group-across-protocols", CrossProtocol::groupAcrossProtocols);
    tests.put("kill9-restart", RestartProducer::run);
    tests.put("group-assignors-static", GroupAssignors::run);

    String bootstrap = System.getenv("KAFKA_BOOTSTRAP");
    if (bootstrap == null || bootstrap.isEmpty()) {
      System.err.println("error: set KAFKA_BOOTSTRAP to the broker's Kafka listener, HOST:PORT");
      System.exit(2);
    }
    List<String> chosen = arguments.length == 0 ? new ArrayList<>(tests.keySet()) : List.of(arguments);
    for (String name : chosen) {
      if (!tests.containsKey(name)) {
        System.err.println("error: unknown test " + name + "; the tests are " + tests.keySet());
        System.exit(2);
      }
    }
    int passed = 0;
    int failed = 0;
    for (String name : chosen) {
      System.out.println("== " + name);
      long started = System.nanoTime();
      String outcome;
      try {
        tests.get(name).run(bootstrap);
        passed++;
        outcome = "PASS";
      } catch (Support.CheckFailed failure) {
        failed++;
        outcome = "FAIL";
        System.out.println("  FAILED: " + failure.getMessage());
      } catch (Throwable error) {
        failed++;
        outcome = "FAIL";
        System.out.println("  FAILED with an exception:");
        error.printStackTrace(System.out);
      }
      System.out.printf("%s %s (%.1f s)%n", outcome, name, (System.nanoTime() - started) / 1e9);
      System.out.flush();
    }
    System.out.println(passed + " passed, " + failed + " failed");
    System.out.flush();
    // Client threads (admin, producer I/O) must not keep a failed run alive.
    System.exit(failed == 0 ? 0 : 1);
  }
}
