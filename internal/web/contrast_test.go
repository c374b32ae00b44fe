package web

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"
)

// contrastJS lists the visible texts of the page whose colour has less than
// WCAG AA's contrast against the background behind them: 4.5:1, or 3:1
// for large text (24 px, or 18.66 px bold). The background is the first
// one found going up from the text (colours with transparency laid over
// the ones below, a gradient judged by its worst colour); a text in a
// disabled control (exempt in WCAG), hidden, or behind a modal dialog is
// skipped. Placeholders
// are checked as texts of their fields.
const contrastJS = `(()=>{
const parse=c=>{const m=c.match(/rgba?\(([^)]+)\)/);if(!m)return null;const p=m[1].split(/[ ,\/]+/).filter(x=>x).map(Number);return [p[0],p[1],p[2],p.length>3?p[3]:1]};
const lum=c=>{const f=v=>{v/=255;return v<=0.03928?v/12.92:Math.pow((v+0.055)/1.055,2.4)};return 0.2126*f(c[0])+0.7152*f(c[1])+0.0722*f(c[2])};
const ratio=(a,b)=>{const x=lum(a),y=lum(b);return (Math.max(x,y)+0.05)/(Math.min(x,y)+0.05)};
const over=(top,bot)=>{const a=top[3];return [top[0]*a+bot[0]*(1-a),top[1]*a+bot[1]*(1-a),top[2]*a+bot[2]*(1-a),1]};
// The backgrounds behind e, from the top: the colours (several for a gradient).
const backs=e=>{const layers=[];let opacity=1;
  for(let n=e;n&&n.nodeType===1;n=n.parentElement){const s=getComputedStyle(n);
    if(s.backgroundImage&&s.backgroundImage!=='none'){const cs=(s.backgroundImage.match(/rgba?\([^)]+\)/g)||[]).map(parse);if(cs.length){layers.push(cs);if(cs.every(c=>c[3]===1))break}}
    const b=parse(s.backgroundColor);if(b&&b[3]>0){layers.push([b]);if(b[3]===1)break}
    if(n.tagName==='DIALOG'&&n.open)break}
  let res=[[255,255,255,1]];
  for(let i=layers.length-1;i>=0;i--){const next=[];for(const r of res)for(const c of layers[i])next.push(over(c,r));res=next}
  return res};
const out=[];const seen=new Set();
// Behind a modal dialog the page is inert and dimmed: only the dialog counts.
const modal=document.querySelector('dialog:modal');
const check=(e,color,what)=>{const s=getComputedStyle(e);const c=parse(color);if(!c||c[3]===0)return;
  const size=parseFloat(s.fontSize),bold=parseInt(s.fontWeight)>=700;const need=(size>=24||(size>=18.66&&bold))?3:4.5;
  let op=1;for(let n=e;n&&n.nodeType===1;n=n.parentElement)op*=parseFloat(getComputedStyle(n).opacity);
  for(const b of backs(e)){const fg=over([c[0],c[1],c[2],c[3]*op],b);const r=ratio(fg,b);
    if(r<need-0.005){const k=what+'|'+color+'|'+b.join();if(seen.has(k))return;seen.add(k);
      out.push(r.toFixed(2)+':1 '+what+' "'+(e.innerText||e.placeholder||'').trim().slice(0,40)+'" '+color+' on rgb('+b.slice(0,3).map(Math.round).join(',')+')');return}}};
for(const e of (modal||document.body).querySelectorAll('*')){
  if(!e.checkVisibility({visibilityProperty:true,opacityProperty:true}))continue;
  if(e.closest(':disabled,[aria-disabled=true]'))continue;
  const r=e.getBoundingClientRect();if(r.width<1||r.height<1)continue;
  const own=Array.from(e.childNodes).some(n=>n.nodeType===3&&n.textContent.trim()!=='');
  if(own)check(e,getComputedStyle(e).color,e.tagName.toLowerCase()+(e.className&&typeof e.className==='string'?'.'+e.className.split(' ')[0]:''));
  if((e.tagName==='INPUT'||e.tagName==='TEXTAREA')&&e.placeholder&&e.value==='')check(e,getComputedStyle(e,'::placeholder').color,e.tagName.toLowerCase()+'::placeholder');
}
return out})()`

// checkContrast fails the test for every text of the page in ctx under
// WCAG AA's contrast.
func checkContrast(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	for _, f := range eval[[]string](t, ctx, contrastJS) {
		t.Errorf("%s: contrast %s", page, f)
	}
}

// contrastPages are the pages the contrast check visits, with what to do
// on each before checking (open a panel, send a form …).
func contrastPages(p *polish) []struct {
	name, path string
	steps      []chromedp.Action[chromedp.Void]
	ready      string
} {
	return []struct {
		name, path string
		steps      []chromedp.Action[chromedp.Void]
		ready      string
	}{
		{"login", "", nil, ""}, // done in a tab of its own
		{"cards", "/imap", nil, "document.querySelector('.card')"},
		{"create panel", "/imap/new", nil, "document.querySelector('dialog.panel[open]')"},
		{"create panel with errors", "/imap/new", []chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS(".panel-foot button[type=submit]"))},
			"document.querySelector('.error-summary')"},
		{"edit panel", "/imap/support_inbox", []chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS("details.advanced > summary"))},
			"document.querySelector('dialog.panel[open] .status-box')"},
		{"edit panel, graph", "/imap/invoices_m365", nil, "document.querySelector('dialog.panel[open]')"},
		{"duplicate dialog", "/imap/orders/duplicate", nil, "document.querySelector('dialog.confirm[open]')"},
		{"delete dialog", "/imap/orders/delete", nil, "document.querySelector('dialog.confirm[open]')"},
		{"flows", "/flows", nil, "document.querySelector('table')"},
		{"flow editor", "/flows/invoice_to_erp", nil, "document.querySelector('#f-name')"},
		{"new flow with errors", "/flows/new", []chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS(".form-actions button[type=submit]"))},
			"document.querySelector('.error-summary')"},
		{"runs", "/runs", nil, "document.querySelector('table')"},
		{"run", "/runs/" + p.s.RunID, nil, "document.querySelector('table')"},
		{"messages", "/messages", nil, "document.querySelector('table')"},
		{"message", "/messages/" + itoa(p.s.Message), nil, "document.querySelector('.verdicts')"},
		{"settings", "/settings", nil, "document.querySelector('#replicas')"},
		{"not found", "/nothing-here", nil, "document.querySelector('h1')"},
	}
}
