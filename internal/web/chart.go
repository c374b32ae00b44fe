package web

import (
	"context"
	"fmt"
	"time"
)

// chart is a bar chart of messages per hour over the last 24 hours.
type chart struct {
	Bars  []bar
	Ticks []tick
	Total int
	Max   int
}

type bar struct {
	X, Y, H float64
	Count   int
	Label   string
}

type tick struct {
	X     float64
	Label string
}

// chartMessages bounds the messages read for the chart.
const chartMessages = 1000

func (u *UI) messagesChart(ctx context.Context, imapName string) (*chart, error) {
	times, err := u.store.ReceivedTimes(ctx, imapName, chartMessages)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	end := now.Truncate(time.Hour).Add(time.Hour)
	start := end.Add(-24 * time.Hour)
	counts := make([]int, 24)
	for _, t := range times {
		t = t.UTC()
		if t.Before(start) || !t.Before(end) {
			continue
		}
		counts[int(t.Sub(start)/time.Hour)]++
	}
	ch := &chart{}
	for _, n := range counts {
		ch.Total += n
		ch.Max = max(ch.Max, n)
	}
	const width, height, gap = 480.0, 80.0, 4.0
	bw := width / 24
	for i, n := range counts {
		h := 0.0
		if ch.Max > 0 {
			h = height * float64(n) / float64(ch.Max)
		}
		if n > 0 && h < 2 {
			h = 2
		}
		from := start.Add(time.Duration(i) * time.Hour)
		ch.Bars = append(ch.Bars, bar{X: float64(i)*bw + gap/2, Y: height - h, H: h, Count: n,
			Label: fmt.Sprintf("%s–%s UTC: %d message%s", from.Format("15:04"), from.Add(time.Hour).Format("15:04"), n, plural(n))})
		if i%6 == 0 {
			ch.Ticks = append(ch.Ticks, tick{X: float64(i) * bw, Label: from.Format("15:04")})
		}
	}
	return ch, nil
}
