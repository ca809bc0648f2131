// Spate's Kafka-API compatibility program for franz-go (pkg/kgo and pkg/kadm).
//
// Runs the plan every client folder under tests/compat/ runs against $KAFKA_BOOTSTRAP: create a
// topic with the admin API, produce keyed records with the client's defaults (franz-go is
// idempotent with acks=all and snappy by default), once per compression codec, consume them with
// a group of two members and check every record exactly, commit, restart a consumer and check it
// resumes at the committed offset, list offsets and describe configs, delete the topic. Exits 0
// only if every check passed.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	client         = "franz-go"
	partitions     = 3
	retentionMs    = "86400000" // a topic-level override describe must report as such
	defaultRecords = 30
	phaseRecords   = 10
	afterRecords   = 12
	deadline       = 60 * time.Second
)

var (
	bootstrap = os.Getenv("KAFKA_BOOTSTRAP")
	runID     = randomID()
	topic     = fmt.Sprintf("compat-%s-%s", client, runID)
	group     = fmt.Sprintf("compat-%s-group-%s", client, runID)
	started   = time.Now()
	checks    = &checkList{}
)

func randomID() string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// checkList counts and prints every check; a failed check is printed with what was seen.
type checkList struct {
	mu     sync.Mutex
	passed int
	failed []string
}

func (c *checkList) check(name string, ok bool, detail string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.passed++
		fmt.Printf("  ok   %s\n", name)
	} else {
		c.failed = append(c.failed, name)
		fmt.Printf("  FAIL %s: %s\n", name, detail)
	}
	return ok
}

func step(name string) {
	fmt.Printf("== [%5.1f s] %s\n", time.Since(started).Seconds(), name)
}

func waitUntil(what string, timeout time.Duration, predicate func() bool) bool {
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		if predicate() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("  (timed out after %v waiting for %s)\n", timeout, what)
	return false
}

type header struct{ key, value string }

type record struct {
	key, value string
	headers    []header
}

type slot struct {
	partition int32
	offset    int64
}

// received is one record as a consumer saw it.
type received struct {
	slot
	record
	timestampMs int64
}

// produced is the model of what was acknowledged.
type produced struct {
	records        map[slot]record
	partitionOfKey map[string]int32
}

func (p *produced) byPartition() map[int32][]slot {
	out := map[int32][]slot{}
	for s := range p.records {
		out[s.partition] = append(out[s.partition], s)
	}
	for _, slots := range out {
		sort.Slice(slots, func(i, j int) bool { return slots[i].offset < slots[j].offset })
	}
	return out
}

// endOffsets: offsets within a partition are dense from 0, every acknowledged record takes one.
func (p *produced) endOffsets() map[int32]int64 {
	out := map[int32]int64{}
	for i := int32(0); i < partitions; i++ {
		out[i] = int64(len(p.byPartition()[i]))
	}
	return out
}

func newClient(opts ...kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(bootstrap)}, opts...)...)
	if err != nil {
		fmt.Printf("creating a client: %v\n", err)
		os.Exit(2)
	}
	return cl
}

func producePhase(model *produced, phase string, count int, opts ...kgo.Opt) {
	step(fmt.Sprintf("produce %d keyed records: %s", count, phase))
	producer := newClient(opts...)
	defer producer.Close()
	var records []*kgo.Record
	sent := map[*kgo.Record]record{}
	for i := 0; i < count; i++ {
		r := record{
			key:     fmt.Sprintf("key-%d", i%10),
			value:   fmt.Sprintf("%s-%d", phase, i),
			headers: []header{{"phase", phase}, {"index", fmt.Sprint(i)}},
		}
		kr := &kgo.Record{Topic: topic, Key: []byte(r.key), Value: []byte(r.value)}
		for _, h := range r.headers {
			kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.key, Value: []byte(h.value)})
		}
		records = append(records, kr)
		sent[kr] = r
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	results := producer.ProduceSync(ctx, records...)
	var errs []string
	fresh := true
	acknowledged := 0
	for _, result := range results {
		if result.Err != nil {
			errs = append(errs, result.Err.Error())
			continue
		}
		acknowledged++
		r := result.Record
		s := slot{r.Partition, r.Offset}
		if _, seen := model.records[s]; seen {
			fresh = false
			fmt.Printf("  two records acknowledged at partition %d offset %d\n", s.partition, s.offset)
		}
		model.records[s] = sent[r]
		if previous, ok := model.partitionOfKey[string(r.Key)]; ok && previous != r.Partition {
			checks.check(fmt.Sprintf("%s: key %s stays on one partition", phase, r.Key), false,
				fmt.Sprintf("partition %d, earlier %d", r.Partition, previous))
		}
		model.partitionOfKey[string(r.Key)] = r.Partition
	}
	checks.check(phase+": every record acknowledged", acknowledged == count,
		fmt.Sprintf("%d of %d", acknowledged, count))
	checks.check(phase+": no produce error", len(errs) == 0, strings.Join(first(errs, 5), "; "))
	checks.check(phase+": every acknowledged offset is distinct", fresh, "")
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// member is one consumer of the group, polling in its own goroutine until stopped.
type member struct {
	name       string
	client     *kgo.Client
	mu         sync.Mutex
	assignment map[int32]bool
	records    []received
	errors     []string
	cancel     context.CancelFunc
	done       chan struct{}
}

func newMember(name string) *member {
	m := &member{name: name, assignment: map[int32]bool{}, done: make(chan struct{})}
	update := func(verb string, add bool) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			m.mu.Lock()
			for _, p := range assigned[topic] {
				if add {
					m.assignment[p] = true
				} else {
					delete(m.assignment, p)
				}
			}
			m.mu.Unlock()
			fmt.Printf("  [%s] %s %v\n", name, verb, assigned[topic])
		}
	}
	m.client = newClient(
		kgo.ClientID(name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(update("assigned", true)),
		kgo.OnPartitionsRevoked(update("revoked", false)),
		kgo.OnPartitionsLost(update("lost", false)),
	)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.poll(ctx)
	return m
}

func (m *member) poll(ctx context.Context) {
	defer close(m.done)
	for ctx.Err() == nil {
		fetches := m.client.PollFetches(ctx)
		m.mu.Lock()
		fetches.EachError(func(t string, p int32, err error) {
			if ctx.Err() == nil {
				m.errors = append(m.errors, fmt.Sprintf("%s[%d]: %v", t, p, err))
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			got := received{slot: slot{r.Partition, r.Offset}, timestampMs: r.Timestamp.UnixMilli(),
				record: record{key: string(r.Key), value: string(r.Value)}}
			for _, h := range r.Headers {
				got.headers = append(got.headers, header{h.Key, string(h.Value)})
			}
			m.records = append(m.records, got)
		})
		m.mu.Unlock()
	}
}

func (m *member) stop() {
	m.cancel()
	<-m.done
}

func (m *member) snapshot() (map[int32]bool, []received) {
	m.mu.Lock()
	defer m.mu.Unlock()
	assignment := map[int32]bool{}
	for p := range m.assignment {
		assignment[p] = true
	}
	return assignment, append([]received(nil), m.records...)
}

func totalReceived(members []*member) int {
	n := 0
	for _, m := range members {
		_, r := m.snapshot()
		n += len(r)
	}
	return n
}

// checkConsumed: every acknowledged record at or after start is received exactly once, by the
// member that owns its partition, in offset order, with its key, value and headers.
func checkConsumed(label string, members []*member, model *produced, start map[int32]int64) {
	expected := model.byPartition()
	owner := map[int32]string{}
	ok := true
	for _, m := range members {
		_, records := m.snapshot()
		perPartition := map[int32][]received{}
		for _, r := range records {
			perPartition[r.partition] = append(perPartition[r.partition], r)
		}
		for p, got := range perPartition {
			if other, seen := owner[p]; seen {
				ok = checks.check(fmt.Sprintf("%s: partition %d read by one member", label, p), false,
					fmt.Sprintf("read by %s and %s", other, m.name))
			}
			owner[p] = m.name
			var want []slot
			for _, s := range expected[p] {
				if s.offset >= start[p] {
					want = append(want, s)
				}
			}
			var gotOffsets, wantOffsets []int64
			for _, g := range got {
				gotOffsets = append(gotOffsets, g.offset)
			}
			for _, w := range want {
				wantOffsets = append(wantOffsets, w.offset)
			}
			if !reflect.DeepEqual(gotOffsets, wantOffsets) {
				ok = checks.check(fmt.Sprintf("%s: partition %d offsets", label, p), false,
					fmt.Sprintf("got %v want %v", gotOffsets, wantOffsets))
				continue
			}
			for i, g := range got {
				if w := model.records[want[i]]; !reflect.DeepEqual(g.record, w) {
					ok = checks.check(fmt.Sprintf("%s: partition %d offset %d exact", label, p, g.offset),
						false, fmt.Sprintf("got %+v want %+v", g.record, w))
				}
			}
		}
	}
	for p := int32(0); p < partitions; p++ {
		wanted := 0
		for _, s := range expected[p] {
			if s.offset >= start[p] {
				wanted++
			}
		}
		if _, read := owner[p]; wanted > 0 && !read {
			ok = checks.check(fmt.Sprintf("%s: partition %d read", label, p), false,
				fmt.Sprintf("none of %d records received", wanted))
		}
	}
	checks.check(label+": every record exactly once, in order, exact", ok, "")
}

func allPartitions() map[int32]bool {
	out := map[int32]bool{}
	for p := int32(0); p < partitions; p++ {
		out[p] = true
	}
	return out
}

func startGroup() []*member {
	step("consume with a group of two members")
	members := []*member{newMember(client + "-member-1"), newMember(client + "-member-2")}
	balanced := func() bool {
		union := map[int32]bool{}
		total := 0
		for _, m := range members {
			a, _ := m.snapshot()
			if len(a) == 0 {
				return false
			}
			total += len(a)
			for p := range a {
				union[p] = true
			}
		}
		return total == len(union) && reflect.DeepEqual(union, allPartitions())
	}
	var assignments []map[int32]bool
	ok := waitUntil("a balanced group", deadline, balanced)
	for _, m := range members {
		a, _ := m.snapshot()
		assignments = append(assignments, a)
	}
	checks.check("both members share the partitions", ok, fmt.Sprintf("assignments %v", assignments))
	return members
}

func finishGroup(members []*member, model *produced, adm *kadm.Client) map[int32]int64 {
	want := len(model.records)
	waitUntil(fmt.Sprintf("%d records", want), deadline, func() bool { return totalReceived(members) >= want })
	time.Sleep(time.Second) // a duplicate would show up as an extra record
	for _, m := range members {
		m.stop()
	}
	checkConsumed("group", members, model, map[int32]int64{0: 0, 1: 0, 2: 0})
	var errs []string
	for _, m := range members {
		errs = append(errs, m.errors...)
	}
	checks.check("group: no consumer error", len(errs) == 0, strings.Join(first(errs, 5), "; "))

	step("commit from each member")
	for _, m := range members {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		commitErr := m.client.CommitUncommittedOffsets(ctx)
		committed := m.client.CommittedOffsets()[topic]
		cancel()
		a, _ := m.snapshot()
		detail := fmt.Sprintf("error %v, assigned %v, committed %v", commitErr, a, committed)
		checks.check(fmt.Sprintf("%s: commit of %d partitions", m.name, len(a)),
			commitErr == nil && len(committed) == len(a), detail)
	}
	for _, m := range members {
		m.client.Close()
	}

	end := model.endOffsets()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	fetched, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = fetched.Error()
	}
	committed := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		if o, ok := fetched.Lookup(topic, p); ok {
			committed[p] = o.At
		}
	}
	checks.check("committed offsets read back (OffsetFetch) equal the end offsets",
		err == nil && reflect.DeepEqual(committed, end), fmt.Sprintf("error %v, committed %v, want %v", err, committed, end))
	return end
}

func resume(model *produced, committed map[int32]int64) []received {
	step("restart a consumer in the group: it resumes at the committed offsets")
	m := newMember(client + "-member-3")
	ok := waitUntil("the assignment", deadline, func() bool {
		a, _ := m.snapshot()
		return reflect.DeepEqual(a, allPartitions())
	})
	a, _ := m.snapshot()
	checks.check("restarted member gets every partition", ok, fmt.Sprintf("assignment %v", a))
	var sum int64
	for _, o := range committed {
		sum += o
	}
	want := len(model.records) - int(sum)
	waitUntil(fmt.Sprintf("%d new records", want), deadline, func() bool {
		_, r := m.snapshot()
		return len(r) >= want
	})
	time.Sleep(time.Second)
	m.stop()
	_, records := m.snapshot()
	firstOffset := map[int32]int64{}
	for _, r := range records {
		if _, seen := firstOffset[r.partition]; !seen {
			firstOffset[r.partition] = r.offset
		}
	}
	wantFirst := map[int32]int64{}
	for p := range firstOffset {
		wantFirst[p] = committed[p]
	}
	checks.check("first offset read per partition is the committed one", reflect.DeepEqual(firstOffset, wantFirst),
		fmt.Sprintf("first %v, committed %v", firstOffset, committed))
	checkConsumed("resumed", []*member{m}, model, committed)
	m.client.Close()
	return records
}

func createTopic(adm *kadm.Client) bool {
	step(fmt.Sprintf("create topic %s (%d partitions, retention.ms=%s)", topic, partitions, retentionMs))
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	retention := retentionMs
	resp, err := adm.CreateTopic(ctx, partitions, 1, map[string]*string{"retention.ms": &retention}, topic)
	if err == nil {
		err = resp.Err
	}
	if !checks.check("CreateTopic", err == nil, fmt.Sprint(err)) {
		return false
	}
	return checks.check(fmt.Sprintf("metadata shows %d partitions", partitions), waitUntil("metadata", deadline, func() bool {
		details, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return false
		}
		d, ok := details[topic]
		if !ok || d.Err != nil || len(d.Partitions) != partitions {
			return false
		}
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false
			}
		}
		return true
	}), "")
}

func listOffsets(adm *kadm.Client, model *produced, afterMs int64, all []received) {
	step("list offsets: earliest, latest, by timestamp, max timestamp")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	end := model.endOffsets()
	offsets := func(label string) func(kadm.ListedOffsets, error) map[int32]kadm.ListedOffset {
		return func(listed kadm.ListedOffsets, err error) map[int32]kadm.ListedOffset {
			if err == nil {
				err = listed.Error()
			}
			if err != nil {
				checks.check("list offsets "+label, false, err.Error())
				return nil
			}
			out := map[int32]kadm.ListedOffset{}
			for p := int32(0); p < partitions; p++ {
				o, _ := listed.Lookup(topic, p)
				out[p] = o
			}
			return out
		}
	}
	onlyOffsets := func(listed map[int32]kadm.ListedOffset) map[int32]int64 {
		out := map[int32]int64{}
		for p, o := range listed {
			out[p] = o.Offset
		}
		return out
	}
	zeros := map[int32]int64{0: 0, 1: 0, 2: 0}
	if got := offsets("earliest")(adm.ListStartOffsets(ctx, topic)); got != nil {
		checks.check("earliest offsets are 0", reflect.DeepEqual(onlyOffsets(got), zeros), fmt.Sprint(onlyOffsets(got)))
	}
	if got := offsets("latest")(adm.ListEndOffsets(ctx, topic)); got != nil {
		checks.check("latest offsets are the record counts", reflect.DeepEqual(onlyOffsets(got), end),
			fmt.Sprintf("got %v, want %v", onlyOffsets(got), end))
	}
	// The first offset whose timestamp is at or after afterMs, per partition (Kafka answers per
	// record, not per batch); kadm reports the end offset where no record is that late.
	timestamps := map[slot]int64{}
	for _, r := range all {
		timestamps[r.slot] = r.timestampMs
	}
	want := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		want[p] = end[p]
		for o := int64(0); o < end[p]; o++ {
			if timestamps[slot{p, o}] >= afterMs {
				want[p] = o
				break
			}
		}
	}
	if got := offsets("by timestamp")(adm.ListOffsetsAfterMilli(ctx, afterMs, topic)); got != nil {
		checks.check(fmt.Sprintf("offsets for timestamp %d are the first records at or after it", afterMs),
			reflect.DeepEqual(onlyOffsets(got), want), fmt.Sprintf("got %v, want %v", onlyOffsets(got), want))
	}
	if got := offsets("by timestamp 0")(adm.ListOffsetsAfterMilli(ctx, 0, topic)); got != nil {
		checks.check("offsets for timestamp 0 are 0", reflect.DeepEqual(onlyOffsets(got), zeros), fmt.Sprint(onlyOffsets(got)))
	}
	if got := offsets("max timestamp")(adm.ListMaxTimestampOffsets(ctx, topic)); got != nil {
		ok := true
		var detail []string
		for p, o := range got {
			var max int64 = -1
			for s, ts := range timestamps {
				if s.partition == p && ts > max {
					max = ts
				}
			}
			if max < 0 {
				continue
			}
			at, known := timestamps[slot{p, o.Offset}]
			if o.Timestamp != max || !known || at != max {
				ok = false
				detail = append(detail, fmt.Sprintf("partition %d: offset %d timestamp %d (record's %d), max %d",
					p, o.Offset, o.Timestamp, at, max))
			}
		}
		checks.check("max-timestamp offsets point at a record with the largest timestamp", ok, strings.Join(detail, "; "))
	}
}

func describeConfigs(adm *kadm.Client) {
	step("describe topic configs")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	described, err := adm.DescribeTopicConfigs(ctx, topic)
	var resource kadm.ResourceConfig
	if err == nil {
		resource, err = described.On(topic, nil)
	}
	if err == nil {
		err = resource.Err
	}
	if !checks.check("DescribeTopicConfigs", err == nil, fmt.Sprint(err)) {
		return
	}
	configs := map[string]kadm.Config{}
	var keys []string
	for _, c := range resource.Configs {
		configs[c.Key] = c
		keys = append(keys, c.Key)
	}
	sort.Strings(keys)
	retention, ok := configs["retention.ms"]
	checks.check("retention.ms is the value set at creation", ok && retention.MaybeValue() == retentionMs,
		fmt.Sprintf("got %q", retention.MaybeValue()))
	checks.check("retention.ms is reported as a topic override", ok && retention.Source == kmsg.ConfigSourceDynamicTopicConfig,
		fmt.Sprintf("source %v", retention.Source))
	// Kafka reports every topic config, defaults included, not only the overridden ones.
	for _, name := range []string{"cleanup.policy", "max.message.bytes", "retention.bytes", "segment.bytes"} {
		c, ok := configs[name]
		checks.check(name+" is reported (default)", ok && c.MaybeValue() != "", fmt.Sprintf("keys reported: %v", keys))
	}
	policy := configs["cleanup.policy"]
	checks.check("cleanup.policy is delete", policy.MaybeValue() == "delete", fmt.Sprintf("got %q", policy.MaybeValue()))
}

func deleteTopic(adm *kadm.Client) {
	step("delete topic")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	resp, err := adm.DeleteTopic(ctx, topic)
	if err == nil {
		err = resp.Err
	}
	if !checks.check("DeleteTopic", err == nil, fmt.Sprint(err)) {
		return
	}
	checks.check("topic gone from metadata", waitUntil("the topic to go", deadline, func() bool {
		details, err := adm.ListTopics(ctx)
		if err != nil {
			return false
		}
		_, present := details[topic]
		return !present
	}), "")
}

func run() {
	adminClient := newClient()
	defer adminClient.Close()
	adm := kadm.NewClient(adminClient)
	model := &produced{records: map[slot]record{}, partitionOfKey: map[string]int32{}}
	if !createTopic(adm) {
		fmt.Println("  stopped: no topic")
		return
	}
	members := startGroup()
	producePhase(model, "defaults", defaultRecords)
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()},
		{"gzip", kgo.GzipCompression()},
		{"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()},
		{"zstd", kgo.ZstdCompression()},
	}
	for _, c := range codecs {
		producePhase(model, "compression-"+c.name, phaseRecords, kgo.ProducerBatchCompression(c.codec))
	}
	committed := finishGroup(members, model, adm)
	var all []received
	var latest int64
	for _, m := range members {
		_, records := m.snapshot()
		all = append(all, records...)
		for _, r := range records {
			if r.timestampMs > latest {
				latest = r.timestampMs
			}
		}
	}
	// Records produced from here on carry timestamps strictly after every earlier record.
	waitUntil("the clock to pass the last record", deadline, func() bool { return time.Now().UnixMilli() > latest+1 })
	afterMs := time.Now().UnixMilli()
	producePhase(model, "after-commit", afterRecords)
	all = append(all, resume(model, committed)...)
	listOffsets(adm, model, afterMs, all)
	describeConfigs(adm)
	deleteTopic(adm)
}

func main() {
	if bootstrap == "" {
		fmt.Fprintln(os.Stderr, "KAFKA_BOOTSTRAP is not set")
		os.Exit(2)
	}
	fmt.Printf("%s (kgo, kadm) against %s\n", client, bootstrap)
	run()
	total := checks.passed + len(checks.failed)
	if len(checks.failed) > 0 {
		fmt.Printf("RESULT %s: %d of %d checks FAILED: %s\n", client, len(checks.failed), total,
			strings.Join(checks.failed, ", "))
		os.Exit(1)
	}
	fmt.Printf("RESULT %s: all %d checks passed\n", client, total)
}
