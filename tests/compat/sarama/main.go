// Spate's Kafka-API compatibility program for sarama (github.com/IBM/sarama).
//
// Runs the plan every client folder under tests/compat/ runs against $KAFKA_BOOTSTRAP: create a
// topic with the admin API, produce keyed records with the client's defaults (sarama's are acks=1,
// not idempotent, no compression, protocol versions of Kafka 2.8), then idempotently with
// acks=all, then once per compression codec, consume them with a group of two members and check
// every record exactly, commit, restart a consumer and check it resumes at the committed offset,
// list offsets and describe configs, delete the topic. Exits 0 only if every check passed.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

const (
	client         = "sarama"
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

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
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

func newConfig(name string) *sarama.Config {
	config := sarama.NewConfig()
	config.ClientID = name
	return config
}

func producePhase(model *produced, phase string, count int, configure func(*sarama.Config)) {
	step(fmt.Sprintf("produce %d keyed records: %s", count, phase))
	config := newConfig(client + "-producer")
	config.Producer.Return.Successes = true // a SyncProducer needs it
	configure(config)
	producer, err := sarama.NewSyncProducer([]string{bootstrap}, config)
	if !checks.check(phase+": producer starts", err == nil, fmt.Sprint(err)) {
		return
	}
	defer producer.Close()
	var messages []*sarama.ProducerMessage
	sent := map[*sarama.ProducerMessage]record{}
	for i := 0; i < count; i++ {
		r := record{
			key:     fmt.Sprintf("key-%d", i%10),
			value:   fmt.Sprintf("%s-%d", phase, i),
			headers: []header{{"phase", phase}, {"index", fmt.Sprint(i)}},
		}
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.key), Value: sarama.StringEncoder(r.value)}
		for _, h := range r.headers {
			m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(h.key), Value: []byte(h.value)})
		}
		messages = append(messages, m)
		sent[m] = r
	}
	err = producer.SendMessages(messages)
	var errs []string
	failed := map[*sarama.ProducerMessage]bool{}
	if err != nil {
		var producerErrors sarama.ProducerErrors
		if errors.As(err, &producerErrors) {
			for _, e := range producerErrors {
				failed[e.Msg] = true
				errs = append(errs, e.Err.Error())
			}
		} else {
			errs = append(errs, err.Error())
		}
	}
	fresh := true
	acknowledged := 0
	for _, m := range messages {
		if failed[m] || err != nil && len(failed) == 0 {
			continue
		}
		acknowledged++
		s := slot{m.Partition, m.Offset}
		if _, seen := model.records[s]; seen {
			fresh = false
			fmt.Printf("  two records acknowledged at partition %d offset %d\n", s.partition, s.offset)
		}
		r := sent[m]
		model.records[s] = r
		if previous, ok := model.partitionOfKey[r.key]; ok && previous != m.Partition {
			checks.check(fmt.Sprintf("%s: key %s stays on one partition", phase, r.key), false,
				fmt.Sprintf("partition %d, earlier %d", m.Partition, previous))
		}
		model.partitionOfKey[r.key] = m.Partition
	}
	checks.check(phase+": every record acknowledged", acknowledged == count,
		fmt.Sprintf("%d of %d", acknowledged, count))
	checks.check(phase+": no produce error", len(errs) == 0, strings.Join(first(errs, 5), "; "))
	checks.check(phase+": every acknowledged offset is distinct", fresh, "")
}

// member is one consumer of the group; sarama calls its handler from the group's goroutines.
type member struct {
	name       string
	group      sarama.ConsumerGroup
	mu         sync.Mutex
	assignment map[int32]bool
	session    sarama.ConsumerGroupSession
	records    []received
	errors     []string
	stopped    bool
	cancel     context.CancelFunc
	done       chan struct{}
}

func (m *member) Setup(session sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	m.session = session
	for _, p := range session.Claims()[topic] {
		m.assignment[p] = true
	}
	m.mu.Unlock()
	fmt.Printf("  [%s] assigned %v (generation %d)\n", m.name, session.Claims()[topic], session.GenerationID())
	return nil
}

func (m *member) Cleanup(session sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	m.assignment = map[int32]bool{}
	m.mu.Unlock()
	fmt.Printf("  [%s] revoked %v\n", m.name, session.Claims()[topic])
	return nil
}

func (m *member) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for message := range claim.Messages() {
		m.mu.Lock()
		if !m.stopped {
			got := received{slot: slot{message.Partition, message.Offset}, timestampMs: message.Timestamp.UnixMilli(),
				record: record{key: string(message.Key), value: string(message.Value)}}
			for _, h := range message.Headers {
				got.headers = append(got.headers, header{string(h.Key), string(h.Value)})
			}
			m.records = append(m.records, got)
			session.MarkMessage(message, "")
		}
		m.mu.Unlock()
	}
	return nil
}

func newMember(name string) *member {
	m := &member{name: name, assignment: map[int32]bool{}, done: make(chan struct{})}
	config := newConfig(name)
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.Offsets.AutoCommit.Enable = false
	config.Consumer.Return.Errors = true
	group, err := sarama.NewConsumerGroup([]string{bootstrap}, group, config)
	if err != nil {
		checks.check(name+": consumer group starts", false, err.Error())
		close(m.done)
		return m
	}
	m.group = group
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		for err := range group.Errors() {
			m.mu.Lock()
			m.errors = append(m.errors, err.Error())
			m.mu.Unlock()
		}
	}()
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			// Consume returns at each rebalance; calling it again rejoins.
			if err := group.Consume(ctx, []string{topic}, m); err != nil && ctx.Err() == nil {
				m.mu.Lock()
				m.errors = append(m.errors, err.Error())
				m.mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	return m
}

// stopReading makes the member ignore further records (there are none by then) and neither mark
// nor record them, so that what it commits is what it read.
func (m *member) stopReading() {
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
}

func (m *member) commit() {
	m.mu.Lock()
	session := m.session
	m.mu.Unlock()
	if session != nil {
		session.Commit()
	}
}

func (m *member) close() {
	if m.group == nil {
		return
	}
	m.cancel()
	<-m.done
	if err := m.group.Close(); err != nil {
		fmt.Printf("  [%s] close: %v\n", m.name, err)
	}
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
	ok := waitUntil("a balanced group", deadline, balanced)
	var assignments []map[int32]bool
	for _, m := range members {
		a, _ := m.snapshot()
		assignments = append(assignments, a)
	}
	checks.check("both members share the partitions", ok, fmt.Sprintf("assignments %v", assignments))
	return members
}

func fetchCommitted(admin sarama.ClusterAdmin) (map[int32]int64, error) {
	request := map[string][]int32{topic: {}}
	for p := int32(0); p < partitions; p++ {
		request[topic] = append(request[topic], p)
	}
	response, err := admin.ListConsumerGroupOffsets(group, request)
	if err != nil {
		return nil, err
	}
	if !errors.Is(response.Err, sarama.ErrNoError) {
		return nil, response.Err
	}
	committed := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		block := response.GetBlock(topic, p)
		if block == nil {
			return committed, fmt.Errorf("no block for partition %d", p)
		}
		if !errors.Is(block.Err, sarama.ErrNoError) {
			return committed, fmt.Errorf("partition %d: %w", p, block.Err)
		}
		committed[p] = block.Offset
	}
	return committed, nil
}

func finishGroup(members []*member, model *produced, admin sarama.ClusterAdmin) map[int32]int64 {
	want := len(model.records)
	waitUntil(fmt.Sprintf("%d records", want), deadline, func() bool { return totalReceived(members) >= want })
	time.Sleep(time.Second) // a duplicate would show up as an extra record
	for _, m := range members {
		m.stopReading()
	}
	checkConsumed("group", members, model, map[int32]int64{0: 0, 1: 0, 2: 0})
	var errs []string
	for _, m := range members {
		m.mu.Lock()
		errs = append(errs, m.errors...)
		m.mu.Unlock()
	}
	checks.check("group: no consumer error", len(errs) == 0, strings.Join(first(errs, 5), "; "))

	step("commit from each member")
	for _, m := range members {
		m.commit()
	}
	// sarama's Commit reports failures on the group's error channel only.
	time.Sleep(200 * time.Millisecond)
	for _, m := range members {
		m.mu.Lock()
		errs := append([]string(nil), m.errors...)
		m.mu.Unlock()
		checks.check(m.name+": commit without error", len(errs) == 0, strings.Join(first(errs, 5), "; "))
	}
	for _, m := range members {
		m.close()
	}
	end := model.endOffsets()
	committed, err := fetchCommitted(admin)
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
	m.stopReading()
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
	m.close()
	return records
}

func topicVisible(admin sarama.ClusterAdmin) bool {
	described, err := admin.DescribeTopics([]string{topic})
	if err != nil || len(described) != 1 || !errors.Is(described[0].Err, sarama.ErrNoError) ||
		len(described[0].Partitions) != partitions {
		return false
	}
	for _, p := range described[0].Partitions {
		if !errors.Is(p.Err, sarama.ErrNoError) || p.Leader < 0 {
			return false
		}
	}
	return true
}

func createTopic(admin sarama.ClusterAdmin) bool {
	step(fmt.Sprintf("create topic %s (%d partitions, retention.ms=%s)", topic, partitions, retentionMs))
	retention := retentionMs
	err := admin.CreateTopic(topic, &sarama.TopicDetail{
		NumPartitions:     partitions,
		ReplicationFactor: 1,
		ConfigEntries:     map[string]*string{"retention.ms": &retention},
	}, false)
	if !checks.check("CreateTopic", err == nil, fmt.Sprint(err)) {
		return false
	}
	return checks.check(fmt.Sprintf("metadata shows %d partitions", partitions),
		waitUntil("metadata", deadline, func() bool { return topicVisible(admin) }), "")
}

func listOffsets(model *produced, afterMs int64, all []received) {
	step("list offsets: earliest, latest, by timestamp (sarama's default version, Kafka 2.8, has no max-timestamp query)")
	config := newConfig(client + "-offsets")
	offsetClient, err := sarama.NewClient([]string{bootstrap}, config)
	if !checks.check("client for offsets starts", err == nil, fmt.Sprint(err)) {
		return
	}
	defer offsetClient.Close()
	end := model.endOffsets()
	query := func(label string, at int64) map[int32]int64 {
		out := map[int32]int64{}
		for p := int32(0); p < partitions; p++ {
			offset, err := offsetClient.GetOffset(topic, p, at)
			if err != nil {
				checks.check(fmt.Sprintf("list offsets %s, partition %d", label, p), false, err.Error())
				return nil
			}
			out[p] = offset
		}
		return out
	}
	zeros := map[int32]int64{0: 0, 1: 0, 2: 0}
	if got := query("earliest", sarama.OffsetOldest); got != nil {
		checks.check("earliest offsets are 0", reflect.DeepEqual(got, zeros), fmt.Sprint(got))
	}
	if got := query("latest", sarama.OffsetNewest); got != nil {
		checks.check("latest offsets are the record counts", reflect.DeepEqual(got, end),
			fmt.Sprintf("got %v, want %v", got, end))
	}
	// The first offset whose timestamp is at or after afterMs, per partition (Kafka answers per
	// record, not per batch); -1 where no record is that late.
	timestamps := map[slot]int64{}
	for _, r := range all {
		timestamps[r.slot] = r.timestampMs
	}
	want := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		want[p] = -1
		for o := int64(0); o < end[p]; o++ {
			if timestamps[slot{p, o}] >= afterMs {
				want[p] = o
				break
			}
		}
	}
	if got := query("by timestamp", afterMs); got != nil {
		checks.check(fmt.Sprintf("offsets for timestamp %d are the first records at or after it", afterMs),
			reflect.DeepEqual(got, want), fmt.Sprintf("got %v, want %v", got, want))
	}
	if got := query("by timestamp 0", 0); got != nil {
		checks.check("offsets for timestamp 0 are 0", reflect.DeepEqual(got, zeros), fmt.Sprint(got))
	}
}

func describeConfigs(admin sarama.ClusterAdmin) {
	step("describe topic configs")
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	if !checks.check("DescribeConfig", err == nil, fmt.Sprint(err)) {
		return
	}
	configs := map[string]sarama.ConfigEntry{}
	var keys []string
	for _, e := range entries {
		configs[e.Name] = e
		keys = append(keys, e.Name)
	}
	sort.Strings(keys)
	retention, ok := configs["retention.ms"]
	checks.check("retention.ms is the value set at creation", ok && retention.Value == retentionMs,
		fmt.Sprintf("got %q", retention.Value))
	checks.check("retention.ms is reported as a topic override", ok && retention.Source == sarama.SourceTopic && !retention.Default,
		fmt.Sprintf("source %v, default %v", retention.Source, retention.Default))
	// Kafka reports every topic config, defaults included, not only the overridden ones.
	for _, name := range []string{"cleanup.policy", "max.message.bytes", "retention.bytes", "segment.bytes"} {
		c, ok := configs[name]
		checks.check(name+" is reported (default)", ok && c.Value != "", fmt.Sprintf("keys reported: %v", keys))
	}
	checks.check("cleanup.policy is delete", configs["cleanup.policy"].Value == "delete",
		fmt.Sprintf("got %q", configs["cleanup.policy"].Value))
}

func deleteTopic(admin sarama.ClusterAdmin) {
	step("delete topic")
	err := admin.DeleteTopic(topic)
	if !checks.check("DeleteTopic", err == nil, fmt.Sprint(err)) {
		return
	}
	checks.check("topic gone from metadata", waitUntil("the topic to go", deadline, func() bool {
		topics, err := admin.ListTopics()
		if err != nil {
			return false
		}
		_, present := topics[topic]
		return !present
	}), "")
}

func run() {
	admin, err := sarama.NewClusterAdmin([]string{bootstrap}, newConfig(client+"-admin"))
	if !checks.check("cluster admin starts", err == nil, fmt.Sprint(err)) {
		return
	}
	defer admin.Close()
	model := &produced{records: map[slot]record{}, partitionOfKey: map[string]int32{}}
	if !createTopic(admin) {
		fmt.Println("  stopped: no topic")
		return
	}
	members := startGroup()
	producePhase(model, "defaults", defaultRecords, func(*sarama.Config) {})
	idempotent := func(config *sarama.Config) {
		config.Producer.Idempotent = true
		config.Producer.RequiredAcks = sarama.WaitForAll
		config.Net.MaxOpenRequests = 1 // sarama requires it for idempotence
	}
	producePhase(model, "idempotent", phaseRecords, idempotent)
	codecs := []struct {
		name  string
		codec sarama.CompressionCodec
	}{
		{"gzip", sarama.CompressionGZIP},
		{"snappy", sarama.CompressionSnappy},
		{"lz4", sarama.CompressionLZ4},
		{"zstd", sarama.CompressionZSTD},
	}
	for _, c := range codecs {
		producePhase(model, "compression-"+c.name, phaseRecords, func(config *sarama.Config) {
			idempotent(config)
			config.Producer.Compression = c.codec
		})
	}
	committed := finishGroup(members, model, admin)
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
	producePhase(model, "after-commit", afterRecords, func(*sarama.Config) {})
	all = append(all, resume(model, committed)...)
	listOffsets(model, afterMs, all)
	describeConfigs(admin)
	deleteTopic(admin)
}

func main() {
	if bootstrap == "" {
		fmt.Fprintln(os.Stderr, "KAFKA_BOOTSTRAP is not set")
		os.Exit(2)
	}
	fmt.Printf("%s (protocol version %s by default) against %s\n", client, sarama.NewConfig().Version, bootstrap)
	run()
	total := checks.passed + len(checks.failed)
	if len(checks.failed) > 0 {
		fmt.Printf("RESULT %s: %d of %d checks FAILED: %s\n", client, len(checks.failed), total,
			strings.Join(checks.failed, ", "))
		os.Exit(1)
	}
	fmt.Printf("RESULT %s: all %d checks passed\n", client, total)
}
