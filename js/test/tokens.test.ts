import { afterEach, describe, expect, it, vi } from "vitest";
import { EMPTY_TOKEN, TokenStrip, displayToken, tokenTitle } from "../lib/tokens";

const XSS = "<img src=x onerror=alert(1)>";

afterEach(() => {
  document.body.replaceChildren();
});

describe("displayToken", () => {
  it("makes whitespace visible", () => {
    expect(displayToken(" the")).toBe("·the");
    expect(displayToken("\n")).toBe("↵");
    expect(displayToken("\n\n")).toBe("↵↵");
    expect(displayToken("\t")).toBe("⇥");
    expect(displayToken("  ")).toBe("··");
    expect(displayToken("a\r\n")).toBe("a␍↵");
    expect(displayToken("\u00a0")).toBe("⍽");
  });

  it("shows control characters and the empty token", () => {
    expect(displayToken("\u0000")).toBe("␀");
    expect(displayToken("\u001b")).toBe("␛");
    expect(displayToken("\u007f")).toBe("␡");
    expect(displayToken("")).toBe(EMPTY_TOKEN);
    expect(displayToken(null)).toBe(EMPTY_TOKEN);
  });

  it("leaves other text alone (including non-BMP characters)", () => {
    expect(displayToken("Paris")).toBe("Paris");
    expect(displayToken("é😀")).toBe("é😀");
    expect(displayToken("<b>")).toBe("<b>");
  });

  it("titles carry the exact string", () => {
    expect(tokenTitle(" the", 3)).toBe('#3 " the"');
    expect(tokenTitle("\n", 0)).toBe('#0 "\\n"');
  });
});

describe("TokenStrip", () => {
  it("shows an HTML-looking token literally and runs nothing", () => {
    const alert = vi.fn();
    (window as unknown as { alert: unknown }).alert = alert;
    const strip = new TokenStrip({ testid: "strip" });
    document.body.appendChild(strip.el);
    strip.setTokens([XSS, "<script>window.__lwxss=1</script>", "ok"]);
    expect(strip.el.querySelector("img")).toBeNull();
    expect(strip.el.querySelector("script")).toBeNull();
    const texts = [...strip.el.querySelectorAll(".lw-token-text")].map((e) => e.textContent);
    expect(texts[0]).toBe("<img·src=x·onerror=alert(1)>");
    expect(texts[1]).toBe("<script>window.__lwxss=1</script>");
    expect(strip.el.innerHTML).toContain("&lt;img");
    expect((window as unknown as { __lwxss?: number }).__lwxss).toBeUndefined();
    expect(alert).not.toHaveBeenCalled();
    // The raw string is kept (as an attribute value, which is not parsed as HTML).
    expect(strip.item(0)!.title).toBe(`#0 ${JSON.stringify(XSS)}`);
  });

  it("renders one item per token with test ids and indices", () => {
    const strip = new TokenStrip({ itemTestid: "lw-query" });
    strip.setTokens(["<bos>", " the", " cat"]);
    const items = strip.el.querySelectorAll('[data-testid="lw-query"]');
    expect(items.length).toBe(3);
    expect((items[2] as HTMLElement).dataset.index).toBe("2");
    expect(items[1].textContent).toBe("·the");
    expect(strip.getTokens()).toEqual(["<bos>", " the", " cat"]);
  });

  it("calls hover and click callbacks with the token index", () => {
    const onHover = vi.fn();
    const onClick = vi.fn();
    const strip = new TokenStrip({ onHover, onClick });
    document.body.appendChild(strip.el);
    strip.setTokens(["a", "b", "c"]);
    const text = strip.item(1)!.firstElementChild!;
    text.dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    expect(onHover).toHaveBeenLastCalledWith(1, expect.anything());
    text.dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    expect(onHover).toHaveBeenCalledTimes(1); // same token: no repeat
    strip.item(2)!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(onClick).toHaveBeenCalledWith(2, expect.anything());
    strip.el.dispatchEvent(new MouseEvent("mouseleave"));
    expect(onHover).toHaveBeenLastCalledWith(null, expect.anything());
  });

  it("marks active and locked tokens", () => {
    const strip = new TokenStrip();
    strip.setTokens(["a", "b", "c"]);
    strip.setMarks(0, 2);
    expect(strip.item(0)!.classList.contains("lw-active")).toBe(true);
    expect(strip.item(2)!.classList.contains("lw-locked")).toBe(true);
    strip.setMarks(null, null);
    expect(strip.el.querySelectorAll(".lw-active, .lw-locked").length).toBe(0);
  });

  it("sizes axis labels to the heatmap cell", () => {
    const strip = new TokenStrip({ layout: "axis-left", size: 14, offset: 2 });
    strip.setTokens(["a"]);
    expect(strip.el.style.getPropertyValue("--lw-token-size")).toBe("14px");
    expect(strip.el.style.paddingTop).toBe("2px");
    strip.setSize(4);
    expect(strip.el.classList.contains("lw-tokens-dense")).toBe(true);
    const top = new TokenStrip({ layout: "axis-top", size: 10, offset: 3 });
    top.setTokens(["a"]);
    expect(top.el.style.paddingLeft).toBe("3px");
    expect(top.el.className).toContain("lw-tokens-axis-top");
  });
});
